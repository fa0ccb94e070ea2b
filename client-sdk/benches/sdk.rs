//! The SDK's whole call stack (discovery + P2C + breaker + retry budget + timeout + deadline
//! header) against plain reqwest to the same loopback backend, in the same run: added p50
//! latency and added CPU per call.
//!
//! `cargo bench -p msakit --bench sdk`. Backend and registry share one single-threaded runtime;
//! the client runs on a current-thread runtime of its own, whose thread's CPU time is measured;
//! calls are sequential, the variants taking turns in short runs so drift hits them alike.

use std::time::{Duration, Instant};

use msakit::{Client, ServiceClientOptions};

/// On-CPU time of the calling thread so far (`CLOCK_THREAD_CPUTIME_ID`: the scheduler's own
/// accounting, to the nanosecond, user and kernel mode together). The client runs on one
/// current-thread runtime, so this is the client's whole cost: the caller, reqwest's connection
/// tasks, the SDK's background tasks and the kernel's loopback TCP and wake-up work done on that
/// thread; the backend and registry run on another thread and are not counted.
fn cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Context switches of the calling thread so far, voluntary and not (`getrusage`,
/// `RUSAGE_THREAD`): each park of the client's runtime is one.
fn context_switches() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_THREAD)
        .map(|u| (u.voluntary_context_switches() + u.involuntary_context_switches()) as u64)
        .unwrap_or(0)
}

/// The variants, in table order: plain reqwest; plain reqwest again on a client and connection
/// of its own, as the SDK has (the same-run noise floor); under tokio's timer; under the SDK's
/// shared timer (`msakit::timer`); the SDK's request as the SDK builds it (a `reqwest::Request`
/// with the deadline and `traceparent` headers, on a client of its own, under the SDK's timer)
/// without the SDK's logic; the SDK.
/// Then the SDK again under a process's usual subscriber: logs at `info`, traces off (its
/// spans disabled); and with traces on (the OpenTelemetry layer recording every span, exported
/// in batches to an exporter that drops them, so export's own network cost is not counted).
const NAMES: [&str; 8] = [
    "plain reqwest",
    "plain reqwest, 2nd client",
    "reqwest + tokio timeout",
    "reqwest + msakit timeout",
    "the SDK's request, no SDK logic",
    "msakit ServiceClient",
    "msakit, logs on, traces off",
    "msakit, traces on",
];
/// The SDK's column, compared with plain reqwest's.
const SDK: usize = 5;

/// An exporter that drops what it is given.
#[derive(Debug)]
struct Dropped;

impl opentelemetry_sdk::trace::SpanExporter for Dropped {
    async fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// Logs at `info`, written nowhere.
fn logs<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use tracing_subscriber::Layer;
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_filter(tracing_subscriber::EnvFilter::new("info"))
}

/// A process's subscriber: logs at `info` to nowhere; with `traced`, also the OpenTelemetry
/// layer for msakit's spans (as `msakit_server_kit::init_logging` sets it up).
fn subscriber(
    traced: bool,
) -> (
    tracing::Dispatch,
    Option<opentelemetry_sdk::trace::SdkTracerProvider>,
) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    if !traced {
        return (
            tracing::Dispatch::new(tracing_subscriber::registry().with(logs())),
            None,
        );
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(Dropped)
        .build();
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::Level::INFO)
                .with_target("msakit::trace", tracing::Level::DEBUG),
        );
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(traces).with(logs()));
    (dispatch, Some(provider))
}

const VARIANTS: usize = NAMES.len();
/// Calls of one variant in a row: the first comes after another variant (cold), the rest after
/// their own (warm).
const RUN: usize = 5;

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
            // The longest lease the registry grants: the bench outlasts the default 15 s and
            // sends no heartbeats.
            .json(&serde_json::json!({"host": "127.0.0.1", "port": port, "lease_ttl_ms": 300_000}))
            .send()
            .await
            .unwrap();
        let client = Client::builder()
            .registry_url(registry_url)
            .build()
            .unwrap()
            .service_client(ServiceClientOptions::default())
            .unwrap();
        (http, reqwest::Client::new(), client)
    });
    let (logs_only, _) = subscriber(false);
    let (traced, _provider) = subscriber(true);
    // One call of a variant (see `NAMES`). The SDK's request without its logic tells the SDK's
    // own logic apart from the cost of what it sends (the timer, the two headers) in reqwest,
    // hyper and the kernel.
    let call = |variant: usize| {
        let (http, second, client, backend_url) = (&http, &second, &client, &backend_url);
        let (logs_only, traced) = (&logs_only, &traced);
        async move {
            use tracing::instrument::WithSubscriber;
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
                3 => msakit::timer::timeout(
                    Duration::from_secs(2),
                    http.get(format!("{backend_url}/x")).send(),
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
                    msakit::timer::timeout(Duration::from_secs(2), second.execute(request))
                        .await
                        .unwrap()
                        .unwrap()
                }
                5 => client.get("backend", "/x").send().await.unwrap(),
                6 => client
                    .get("backend", "/x")
                    .send()
                    .with_subscriber(logs_only.clone())
                    .await
                    .unwrap(),
                _ => client
                    .get("backend", "/x")
                    .send()
                    .with_subscriber(traced.clone())
                    .await
                    .unwrap(),
            };
            response.bytes().await.unwrap();
        }
    };
    let only: Option<usize> = std::env::var("SDK_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    // Every call is measured on its own. The variants take turns in short runs of `RUN` calls,
    // each cycle in a new random order (so each variant follows every other alike): a run's
    // first call comes right after another variant's code and data (cold caches, as in a
    // service doing other work between calls), the others right after their own (warm, as in a
    // tight loop). A pause of the VM lands on one call, and each call is paired with the plain
    // call at the same place of the same cycle, milliseconds apart. After each call the client's
    // runtime runs whatever the call left ready (`yield_now`), so no variant's leftover work is
    // counted against the next.
    let (samples, cpu, switches) = client_rt.block_on(async {
        let mut samples: [Vec<Duration>; VARIANTS] = Default::default();
        let mut cpu: [Vec<Duration>; VARIANTS] = Default::default();
        let mut switches = [0u64; VARIANTS];
        // Cycle 0 warms every path (connections, discovery cache, watch) and is not counted.
        let mut order: [usize; VARIANTS] = std::array::from_fn(|v| v);
        for cycle in 0..=rounds * per_round / RUN {
            fastrand::shuffle(&mut order);
            for variant in order {
                // `SDK_BENCH_ONLY=<variant>` runs one variant alone, for a profiler.
                if only.is_some_and(|only| only != variant) {
                    continue;
                }
                for _ in 0..RUN {
                    let started_switches = context_switches();
                    let started_cpu = cpu_time();
                    let started = Instant::now();
                    call(variant).await;
                    let elapsed = started.elapsed();
                    tokio::task::yield_now().await;
                    let spent = cpu_time() - started_cpu;
                    if cycle > 0 {
                        samples[variant].push(elapsed);
                        cpu[variant].push(spent);
                        switches[variant] += context_switches() - started_switches;
                    }
                }
            }
        }
        (samples, cpu, switches)
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
    let samples_in_order = samples.clone();
    let mut samples = samples;
    let p50: Vec<Duration> = samples.iter_mut().map(|s| percentile(s, 0.5)).collect();
    let p99: Vec<Duration> = samples.iter_mut().map(|s| percentile(s, 0.99)).collect();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (plain, sdk) = (0, SDK);
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
    // The same apart: the first call of each run (after another variant) and the others.
    for (name, first) in [
        ("p50, first of a run (cold)", true),
        ("p50, rest of a run (warm)", false),
    ] {
        let p50: Vec<f64> = samples_in_order
            .iter()
            .map(|s| {
                let mut part: Vec<Duration> = s
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i % RUN == 0) == first)
                    .map(|(_, &d)| d)
                    .collect();
                us(percentile(&mut part, 0.5))
            })
            .collect();
        row(name, p50, " µs", true);
    }
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
        "client CPU per call (mean)",
        cpu.iter()
            .map(|c| us(c.iter().sum::<Duration>()) / c.len().max(1) as f64)
            .collect(),
        " µs",
        false,
    );
    row(
        "client CPU per call (median)",
        cpu.clone()
            .iter_mut()
            .map(|c| us(percentile(c, 0.5)))
            .collect(),
        " µs",
        false,
    );
    // Added CPU per call against plain reqwest, each call paired with the plain call at the same
    // place of its cycle: mean ± 95% confidence interval, over every call, over the first of each
    // run (after other code) and over the others (after the same code).
    for (name, place) in [
        ("all calls", None),
        ("first of a run (cold)", Some(true)),
        ("rest of a run (warm)", Some(false)),
    ] {
        let mut line = format!("| client CPU per call vs plain, {name}, paired (mean ± 95% CI) |");
        for variant in 0..VARIANTS {
            let added: Vec<f64> = cpu[variant]
                .iter()
                .zip(&cpu[plain])
                .enumerate()
                .filter(|(i, _)| place.is_none_or(|first| (i % RUN == 0) == first))
                .map(|(_, (&with, &without))| us(with) - us(without))
                .collect();
            let n = added.len() as f64;
            let mean = added.iter().sum::<f64>() / n;
            let variance =
                added.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            line += &format!(" {mean:+.2} ± {:.2} µs |", 1.96 * (variance / n).sqrt());
        }
        println!("{line} |");
    }
    let cpu_mean = |v: usize| us(cpu[v].iter().sum::<Duration>()) / cpu[v].len().max(1) as f64;
    let p50_us = |v: usize| us(p50[v]);
    // The fair baseline: the very request the SDK sends (deadline and `traceparent` headers,
    // under the same timer), without the SDK's logic (issue 22's goal: ≤ 1 µs, ≤ 2%).
    const FAIR: usize = 4;
    println!(
        "\nthe SDK vs the fair baseline ({}): p50 {:+.2} µs ({:+.1}%), mean client CPU {:+.2} µs per call",
        NAMES[FAIR],
        p50_us(SDK) - p50_us(FAIR),
        (p50_us(SDK) / p50_us(FAIR) - 1.0) * 100.0,
        cpu_mean(SDK) - cpu_mean(FAIR),
    );
    println!(
        "\ntraces on vs off (both under a subscriber logging at info): p50 {:+.2} µs, mean client CPU {:+.2} µs per call; \
         traces off vs no subscriber at all: p50 {:+.2} µs, CPU {:+.2} µs",
        p50_us(7) - p50_us(6),
        cpu_mean(7) - cpu_mean(6),
        p50_us(6) - p50_us(SDK),
        cpu_mean(6) - cpu_mean(SDK),
    );
}
