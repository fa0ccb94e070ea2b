//! The SDK's whole call stack (discovery + P2C + breaker + retry budget + timeout + deadline
//! header) against plain reqwest to the same loopback backend, in the same run: added p50
//! latency and added CPU per call.
//!
//! `cargo bench -p msakit --bench sdk`. Backend and registry share one single-threaded runtime;
//! the client runs on a current-thread runtime of its own, whose thread's CPU time is measured;
//! calls are sequential, in alternating rounds of 200 so drift hits both alike.

use std::time::{Duration, Instant};

use msakit::{Discovery, DiscoveryOptions, ServiceClient, ServiceClientOptions};

/// On-CPU time of the calling thread, in nanoseconds, from the scheduler's own accounting
/// (`/proc/thread-self/schedstat`, Linux). The client runs on one current-thread runtime, so this
/// is the client's whole cost: the caller, reqwest's connection tasks and the SDK's background
/// tasks; the backend and registry run on other threads and are not counted.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}

/// User-mode CPU time of the calling thread (`/proc/thread-self/stat`, 10 ms ticks): the
/// client's own code — the SDK, reqwest, hyper, tokio — without the kernel's loopback TCP and
/// wake-up work, which moves by microseconds between runs on a VM.
fn user_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let ticks: u64 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(11)?.parse().ok())
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let at = ((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1));
    samples.get(at).copied().unwrap_or_default()
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
    let rounds = 100;
    let per_round = 200;
    let (http, client) = client_rt.block_on(async {
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
        (http, client)
    });
    // One call of a variant: plain reqwest; the same request by hand with what the SDK adds on
    // the wire (a per-request timeout, the deadline and traceparent headers), which tells the
    // SDK's own logic apart from the cost of those features in reqwest and the kernel; the SDK.
    let call = |variant: usize| {
        let (http, client, backend_url) = (&http, &client, &backend_url);
        async move {
            let response = match variant {
                0 => http.get(format!("{backend_url}/x")).send().await.unwrap(),
                1 => http
                    .get(format!("{backend_url}/x"))
                    .timeout(Duration::from_secs(2))
                    .header("x-msakit-deadline-ms", "5000")
                    .header(
                        "traceparent",
                        format!(
                            "00-{:032x}-{:016x}-01",
                            fastrand::u128(1..),
                            fastrand::u64(1..)
                        ),
                    )
                    .send()
                    .await
                    .unwrap(),
                _ => client.get("backend", "/x").send().await.unwrap(),
            };
            response.bytes().await.unwrap();
        }
    };
    let (samples, cpu, user) = client_rt.block_on(async {
        let only: Option<usize> = std::env::var("SDK_BENCH_ONLY")
            .ok()
            .and_then(|v| v.parse().ok());
        let mut samples = [Vec::new(), Vec::new(), Vec::new()];
        let mut cpu = [Duration::ZERO; 3];
        let mut user = [Duration::ZERO; 3];
        // Warm every path (connections, discovery cache, watch), then measure in rounds, the
        // variants in turn.
        for round in 0..=rounds {
            for (variant, (samples, cpu)) in samples.iter_mut().zip(&mut cpu).enumerate() {
                // `SDK_BENCH_ONLY=<0|1|2>` runs one variant alone, for a profiler.
                if only.is_some_and(|only| only != variant) {
                    continue;
                }
                let started_cpu = cpu_time();
                let started_user = user_time();
                for _ in 0..per_round {
                    let t = Instant::now();
                    call(variant).await;
                    if round > 0 {
                        samples.push(t.elapsed());
                    }
                }
                if round > 0 {
                    *cpu += cpu_time() - started_cpu;
                    user[variant] += user_time() - started_user;
                }
            }
        }
        (samples, cpu, user)
    });
    // Heap allocations per call on the client's thread (the caller, reqwest's connection tasks,
    // the SDK's tasks), counted over 1,000 warm calls of each variant.
    let allocations: Vec<u64> = (0..3)
        .map(|variant| {
            let counted = allocation_counter::measure(|| {
                client_rt.block_on(async {
                    for _ in 0..1000 {
                        call(variant).await;
                    }
                })
            });
            counted.count_total / 1000
        })
        .collect();
    let calls = (rounds * per_round) as u32;
    let [mut plain, mut by_hand, mut sdk] = samples;
    let p50 = [
        percentile(&mut plain, 0.5),
        percentile(&mut by_hand, 0.5),
        percentile(&mut sdk, 0.5),
    ];
    let p99 = [
        percentile(&mut plain, 0.99),
        percentile(&mut by_hand, 0.99),
        percentile(&mut sdk, 0.99),
    ];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let per_call = |d: Duration| us(d) / f64::from(calls);
    println!(
        "\n## SDK call stack vs plain reqwest, {calls} sequential calls each, same loopback backend"
    );
    println!(
        "| | plain reqwest | reqwest + timeout + SDK headers | msakit ServiceClient | SDK vs plain | SDK vs by hand |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| p50 latency | {:.1} µs | {:.1} µs | {:.1} µs | {:+.1}% | {:+.1}% |",
        us(p50[0]),
        us(p50[1]),
        us(p50[2]),
        (us(p50[2]) / us(p50[0]) - 1.0) * 100.0,
        (us(p50[2]) / us(p50[1]) - 1.0) * 100.0
    );
    println!(
        "| p99 latency | {:.1} µs | {:.1} µs | {:.1} µs | {:+.1}% | {:+.1}% |",
        us(p99[0]),
        us(p99[1]),
        us(p99[2]),
        (us(p99[2]) / us(p99[0]) - 1.0) * 100.0,
        (us(p99[2]) / us(p99[1]) - 1.0) * 100.0
    );
    println!(
        "| client user-mode CPU per call | {:.2} µs | {:.2} µs | {:.2} µs | {:+.2} µs | {:+.2} µs |",
        per_call(user[0]),
        per_call(user[1]),
        per_call(user[2]),
        per_call(user[2]) - per_call(user[0]),
        per_call(user[2]) - per_call(user[1])
    );
    println!(
        "| heap allocations per call | {} | {} | {} | {:+} | {:+} |",
        allocations[0],
        allocations[1],
        allocations[2],
        allocations[2] as i64 - allocations[0] as i64,
        allocations[2] as i64 - allocations[1] as i64
    );
    println!(
        "| client CPU per call | {:.2} µs | {:.2} µs | {:.2} µs | {:+.2} µs | {:+.2} µs |",
        per_call(cpu[0]),
        per_call(cpu[1]),
        per_call(cpu[2]),
        per_call(cpu[2]) - per_call(cpu[0]),
        per_call(cpu[2]) - per_call(cpu[1])
    );
}
