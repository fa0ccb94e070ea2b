//! The SDK's whole call stack (discovery + P2C + breaker + retry budget + timeout + deadline
//! header) against plain reqwest to the same loopback backend, in the same run: added p50
//! latency and added CPU per call.
//!
//! `cargo bench -p msakit --bench sdk`. Backend and registry share one single-threaded runtime;
//! the client runs on a current-thread runtime of its own, whose thread's CPU time is measured;
//! calls are sequential, alternating in rounds so drift hits both alike.

use std::time::{Duration, Instant};

use msakit::{Discovery, DiscoveryOptions, ServiceClient, ServiceClientOptions};

/// User + system CPU time of the calling thread, from /proc (Linux), in clock ticks of 10 ms.
/// The client runs on one current-thread runtime, so this is the client's whole cost: the
/// caller, reqwest's connection tasks and the SDK's background tasks; the backend and registry
/// run on other threads and are not counted.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

fn main() {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (registry_url, backend_url, port) = server_rt.block_on(async {
        let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let registry_url = format!("http://{}", registry.local_addr().unwrap());
        tokio::spawn(msakit_registry::run(
            registry,
            msakit_registry::RegistryConfig::default(),
            std::future::pending(),
        ));
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = backend.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(backend, app).await });
        (registry_url, format!("http://127.0.0.1:{port}"), port)
    });
    let rounds = 20;
    let per_round = 1000;
    let (plain, sdk, plain_cpu, sdk_cpu) = client_rt.block_on(async move {
        let http = reqwest::Client::new();
        http.put(format!("{registry_url}/v1/services/backend/instances/b1"))
            .json(&serde_json::json!({"host": "127.0.0.1", "port": port}))
            .send()
            .await
            .unwrap();
        let client = ServiceClient::new(
            Discovery::new(DiscoveryOptions::new(registry_url)),
            ServiceClientOptions::default(),
        )
        .unwrap();
        // Warm both paths (connections, discovery cache, watch).
        for _ in 0..500 {
            http.get(format!("{backend_url}/x"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            client
                .get("backend", "/x")
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
        }
        let (mut plain, mut sdk) = (Vec::new(), Vec::new());
        let (mut plain_cpu, mut sdk_cpu) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let cpu = cpu_time();
            for _ in 0..per_round {
                let t = Instant::now();
                http.get(format!("{backend_url}/x"))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                plain.push(t.elapsed());
            }
            plain_cpu += cpu_time() - cpu;
            let cpu = cpu_time();
            for _ in 0..per_round {
                let t = Instant::now();
                client
                    .get("backend", "/x")
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                sdk.push(t.elapsed());
            }
            sdk_cpu += cpu_time() - cpu;
        }
        (plain, sdk, plain_cpu, sdk_cpu)
    });
    let calls = (rounds * per_round) as u32;
    let (mut plain, mut sdk) = (plain, sdk);
    let (p50_plain, p50_sdk) = (percentile(&mut plain, 0.5), percentile(&mut sdk, 0.5));
    let (p99_plain, p99_sdk) = (percentile(&mut plain, 0.99), percentile(&mut sdk, 0.99));
    println!(
        "\n## SDK call stack vs plain reqwest, {calls} sequential calls each, same loopback backend"
    );
    println!("| | plain reqwest | msakit ServiceClient | added |\n|---|---:|---:|---:|");
    println!(
        "| p50 latency | {:.1} µs | {:.1} µs | {:+.1}% |",
        p50_plain.as_secs_f64() * 1e6,
        p50_sdk.as_secs_f64() * 1e6,
        (p50_sdk.as_secs_f64() / p50_plain.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "| p99 latency | {:.1} µs | {:.1} µs | |",
        p99_plain.as_secs_f64() * 1e6,
        p99_sdk.as_secs_f64() * 1e6
    );
    println!(
        "| client CPU per call | {:.2} µs | {:.2} µs | {:+.2} µs |",
        plain_cpu.as_secs_f64() * 1e6 / f64::from(calls),
        sdk_cpu.as_secs_f64() * 1e6 / f64::from(calls),
        (sdk_cpu.as_secs_f64() - plain_cpu.as_secs_f64()) * 1e6 / f64::from(calls)
    );
}
