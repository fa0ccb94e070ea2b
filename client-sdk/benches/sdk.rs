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

/// The variants, in table order: plain reqwest; plain reqwest again on a client and connection
/// of its own, as the SDK has (the same-run noise floor); under the attempt's timer alone; with
/// the timer and the headers the SDK sends, by hand; the SDK's request as the SDK builds it
/// (a `reqwest::Request` with its headers, on a client of its own, under the timer) without the
/// SDK's logic; the SDK.
const NAMES: [&str; 6] = [
    "plain reqwest",
    "plain reqwest, 2nd client",
    "reqwest + timeout",
    "reqwest + timeout + SDK headers",
    "the SDK's request, no SDK logic",
    "msakit ServiceClient",
];
const VARIANTS: usize = NAMES.len();

/// Context switches of the calling thread so far, voluntary and not
/// (`/proc/thread-self/status`): each park of the client's runtime is one.
fn context_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
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
    // `SDK_BENCH_ROUNDS=<n>` (default 100): fewer for a slow profiler such as callgrind.
    let rounds: usize = std::env::var("SDK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let per_round = 200;
    let (http, second, client) = client_rt.block_on(async {
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
        (http, reqwest::Client::new(), client)
    });
    // One call of a variant (see `NAMES`). The request by hand with what the SDK adds tells the
    // SDK's own logic apart from the cost of those features in tokio, reqwest and the kernel.
    let call = |variant: usize| {
        let (http, second, client, backend_url) = (&http, &second, &client, &backend_url);
        async move {
            let response = match variant {
                0 => http.get(format!("{backend_url}/x")).send().await.unwrap(),
                1 => second.get(format!("{backend_url}/x")).send().await.unwrap(),
                2 => tokio::time::timeout(
                    Duration::from_secs(2),
                    http.get(format!("{backend_url}/x")).send(),
                )
                .await
                .unwrap()
                .unwrap(),
                3 => tokio::time::timeout(
                    Duration::from_secs(2),
                    http.get(format!("{backend_url}/x"))
                        .header("x-msakit-deadline-ms", "5000")
                        .header(
                            "traceparent",
                            format!(
                                "00-{:032x}-{:016x}-01",
                                fastrand::u128(1..),
                                fastrand::u64(1..)
                            ),
                        )
                        .send(),
                )
                .await
                .unwrap()
                .unwrap(),
                4 => {
                    let mut request = reqwest::Request::new(
                        reqwest::Method::GET,
                        reqwest::Url::parse(&format!("{backend_url}/x")).unwrap(),
                    );
                    let headers = request.headers_mut();
                    headers.insert(
                        reqwest::header::HeaderName::from_static("x-msakit-deadline-ms"),
                        reqwest::header::HeaderValue::from(5000u64),
                    );
                    headers.insert(
                        reqwest::header::HeaderName::from_static("traceparent"),
                        reqwest::header::HeaderValue::from_bytes(
                            format!(
                                "00-{:032x}-{:016x}-01",
                                fastrand::u128(1..),
                                fastrand::u64(1..)
                            )
                            .as_bytes(),
                        )
                        .unwrap(),
                    );
                    tokio::time::timeout(Duration::from_secs(2), second.execute(request))
                        .await
                        .unwrap()
                        .unwrap()
                }
                _ => client.get("backend", "/x").send().await.unwrap(),
            };
            response.bytes().await.unwrap();
        }
    };
    let only: Option<usize> = std::env::var("SDK_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    let (samples, cpu, user, switches, rounds_cpu) = client_rt.block_on(async {
        let mut samples: [Vec<Duration>; VARIANTS] = Default::default();
        let mut cpu = [Duration::ZERO; VARIANTS];
        // Each round's CPU per variant, for paired differences: the variants of one round run
        // within milliseconds of each other, so drift of the machine hits them alike.
        let mut rounds_cpu = Vec::new();
        let mut user = [Duration::ZERO; VARIANTS];
        let mut switches = [0u64; VARIANTS];
        // Warm every path (connections, discovery cache, watch), then measure in rounds, the
        // variants in turn, each round starting one variant further on so that no variant
        // always follows the same other.
        for round in 0..=rounds {
            let mut this_round = [Duration::ZERO; VARIANTS];
            for turn in 0..VARIANTS {
                let variant = (round + turn) % VARIANTS;
                // `SDK_BENCH_ONLY=<variant>` runs one variant alone, for a profiler.
                if only.is_some_and(|only| only != variant) {
                    continue;
                }
                let started_cpu = cpu_time();
                let started_user = user_time();
                let started_switches = context_switches();
                for _ in 0..per_round {
                    let t = Instant::now();
                    call(variant).await;
                    if round > 0 {
                        samples[variant].push(t.elapsed());
                    }
                }
                if round > 0 {
                    let spent = cpu_time() - started_cpu;
                    cpu[variant] += spent;
                    this_round[variant] = spent;
                    user[variant] += user_time() - started_user;
                    switches[variant] += context_switches() - started_switches;
                }
            }
            if round > 0 {
                rounds_cpu.push(this_round);
            }
        }
        (samples, cpu, user, switches, rounds_cpu)
    });
    // Heap allocations per call on the client's thread (the caller, reqwest's connection tasks,
    // the SDK's tasks), counted over 1,000 warm calls of each variant.
    let allocations: Vec<u64> = (0..VARIANTS)
        .map(|variant| {
            if only.is_some_and(|only| only != variant) {
                return 0;
            }
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
    let mut samples = samples;
    let p50: Vec<Duration> = samples.iter_mut().map(|s| percentile(s, 0.5)).collect();
    let p99: Vec<Duration> = samples.iter_mut().map(|s| percentile(s, 0.99)).collect();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let per_call = |d: Duration| us(d) / f64::from(calls);
    let (plain, sdk) = (0, VARIANTS - 1);
    println!(
        "\n## SDK call stack vs plain reqwest, {calls} sequential calls each, same loopback backend"
    );
    println!("| | {} | SDK vs plain |", NAMES.join(" | "));
    println!("|---|{}---:|", "---:|".repeat(VARIANTS));
    let row = |name: &str, values: Vec<f64>, unit: &str, relative: bool| {
        let mut line = format!("| {name} |");
        for v in &values {
            line += &format!(" {v:.2}{unit} |");
        }
        if relative {
            line += &format!(" {:+.1}% |", (values[sdk] / values[plain] - 1.0) * 100.0);
        } else {
            line += &format!(" {:+.2}{unit} |", values[sdk] - values[plain]);
        }
        println!("{line}");
    };
    row(
        "p50 latency",
        p50.iter().map(|&d| us(d)).collect(),
        " µs",
        true,
    );
    row(
        "p99 latency",
        p99.iter().map(|&d| us(d)).collect(),
        " µs",
        true,
    );
    row(
        "client user-mode CPU per call",
        user.iter().map(|&d| per_call(d)).collect(),
        " µs",
        false,
    );
    row(
        "heap allocations per call",
        allocations.iter().map(|&a| a as f64).collect(),
        "",
        false,
    );
    row(
        "client context switches per call",
        switches
            .iter()
            .map(|&n| n as f64 / f64::from(calls))
            .collect(),
        "",
        false,
    );
    row(
        "client CPU per call",
        cpu.iter().map(|&d| per_call(d)).collect(),
        " µs",
        false,
    );
    // Added CPU per call against plain reqwest, round by round: mean ± 95% confidence interval.
    let mut line = String::from("| client CPU per call vs plain, per round (mean ± 95% CI) |");
    for variant in 0..VARIANTS {
        let added: Vec<f64> = rounds_cpu
            .iter()
            .map(|round| (us(round[variant]) - us(round[plain])) / per_round as f64)
            .collect();
        let n = added.len() as f64;
        let mean = added.iter().sum::<f64>() / n;
        let variance = added.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        line += &format!(" {mean:+.2} ± {:.2} µs |", 1.96 * (variance / n).sqrt());
    }
    println!("{line} |");
}
