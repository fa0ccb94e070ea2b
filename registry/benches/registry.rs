//! Registry benchmarks, each against a baseline measured in the same run:
//!
//! 1. heartbeat and lookup throughput over HTTP/1.1 keep-alive on loopback, against a bare axum
//!    handler that only answers 200 (the ceiling of the HTTP stack on this machine);
//! 2. propagation: one registration → seen by 1,000 SSE watchers, p50 / p99;
//! 3. scale: 100,000 instances in 1,000 services in the real binary (its RSS), then a sustained
//!    20,000 heartbeats per second.
//!
//! `cargo bench -p msakit-registry --bench registry`. Server and load generator each get one of
//! the machine's two cores (separate single-threaded runtimes), so figures are per core.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a server on its own one-thread runtime; returns its base URL.
fn serve_registry(server_rt: &tokio::runtime::Runtime) -> String {
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = msakit_registry::RegistryConfig::default();
    config.lease.default_ttl = Duration::from_secs(300);
    config.watch.history = 100_000;
    server_rt.spawn(msakit_registry::run(
        listener,
        config,
        std::future::pending(),
    ));
    url
}

fn serve_bare(server_rt: &tokio::runtime::Runtime) -> String {
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::OK });
    server_rt.spawn(async move { axum::serve(listener, app).await });
    url
}

/// Builds request number `i` on a client.
type MakeRequest = Arc<dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync>;

/// Requests per second over `duration` with `connections` keep-alive connections.
fn throughput(
    client_rt: &tokio::runtime::Runtime,
    make: MakeRequest,
    connections: usize,
    duration: Duration,
) -> f64 {
    client_rt.block_on(async move {
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let (done, make) = (Arc::clone(&done), Arc::clone(&make));
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .build()
                        .unwrap();
                    let mut i = c as u64;
                    while started.elapsed() < duration {
                        let response = make(&client, i).send().await.unwrap();
                        assert!(response.status().is_success(), "{}", response.status());
                        let _ = response.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                        i += connections as u64;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    })
}

fn bench_throughput() {
    let server_rt = runtime();
    let client_rt = runtime();
    let registry = serve_registry(&server_rt);
    let bare = serve_bare(&server_rt);
    // 1,000 instances in 250 services (4 each) to heartbeat and look up.
    client_rt.block_on(async {
        let client = reqwest::Client::new();
        for i in 0..1000 {
            let url = format!("{registry}/v1/services/svc-{}/instances/i-{i}", i % 250);
            let r = client
                .put(url)
                .json(&json!({"host": "10.0.0.1", "port": 8080}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    });
    let duration = Duration::from_secs(3);
    let connections = 32;
    println!(
        "\n## Throughput, {connections} keep-alive connections, {} s each",
        duration.as_secs()
    );
    let bare_put = {
        let bare = bare.clone();
        throughput(
            &client_rt,
            Arc::new(move |c, i| {
                c.put(format!(
                    "{bare}/v1/services/svc-{}/instances/i-{}/heartbeat",
                    (i % 1000) % 250,
                    i % 1000
                ))
            }),
            connections,
            duration,
        )
    };
    let heartbeat = {
        let registry = registry.clone();
        throughput(
            &client_rt,
            Arc::new(move |c, i| {
                c.put(format!(
                    "{registry}/v1/services/svc-{}/instances/i-{}/heartbeat",
                    (i % 1000) % 250,
                    i % 1000
                ))
            }),
            connections,
            duration,
        )
    };
    let bare_get = {
        let bare = bare.clone();
        throughput(
            &client_rt,
            Arc::new(move |c, i| c.get(format!("{bare}/v1/services/svc-{}", i % 250))),
            connections,
            duration,
        )
    };
    let lookup = {
        let registry = registry.clone();
        throughput(
            &client_rt,
            Arc::new(move |c, i| {
                c.get(format!("{registry}/v1/services/svc-{}?status=UP", i % 250))
            }),
            connections,
            duration,
        )
    };
    println!("| request | bare axum 200 (ceiling) | registry | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| heartbeat `PUT …/heartbeat` | {bare_put:.0}/s | {heartbeat:.0}/s | {:.2}× |",
        heartbeat / bare_put
    );
    println!(
        "| lookup `GET /v1/services/{{s}}?status=UP` (4 instances, ~2 KB JSON) | {bare_get:.0}/s | {lookup:.0}/s | {:.2}× |",
        lookup / bare_get
    );
    drop(client_rt);
    drop(server_rt);
}

/// A watcher on a raw TCP connection (a plain HTTP/1.1 GET, no client library), so the load
/// generator's own cost stays small next to the server's.
struct RawWatcher {
    socket: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl RawWatcher {
    async fn open(addr: &str, path: &str) -> RawWatcher {
        use tokio::io::AsyncWriteExt;
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        RawWatcher {
            socket,
            buffer: Vec::new(),
        }
    }

    /// Reads until `marker` has arrived; returns when it did.
    async fn until(&mut self, marker: &[u8]) -> Instant {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(at) = self.buffer.windows(marker.len()).position(|w| w == marker) {
                self.buffer.drain(..at + marker.len());
                return Instant::now();
            }
            let mut chunk = [0u8; 4096];
            let n = self.socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "stream closed");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

fn bench_propagation() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let server_rt = runtime();
    let client_rt = runtime();
    let registry = serve_registry(&server_rt);
    let watchers = 1000;
    let rounds = 20;
    let latencies = client_rt.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(watchers + 1));
        let (tx, _) = tokio::sync::broadcast::channel::<Instant>(64);
        let tasks: Vec<_> = (0..watchers)
            .map(|_| {
                let (barrier, mut starts) = (Arc::clone(&barrier), tx.subscribe());
                let addr = registry.trim_start_matches("http://").to_owned();
                tokio::spawn(async move {
                    let mut watcher = RawWatcher::open(&addr, "/v1/watch?service=prop").await;
                    watcher.until(b"event: snapshot").await;
                    barrier.wait().await;
                    let mut seen = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let arrived = watcher.until(b"event: change").await;
                        let sent = starts.recv().await.unwrap();
                        seen.push(arrived.saturating_duration_since(sent));
                    }
                    seen
                })
            })
            .collect();
        barrier.wait().await;
        let client = reqwest::Client::new();
        for round in 0..rounds {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tx.send(Instant::now());
            client
                .put(format!("{registry}/v1/services/prop/instances/p-{round}"))
                .json(&json!({"host": "10.0.0.2", "port": 9000}))
                .send()
                .await
                .unwrap();
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    println!(
        "\n## Propagation: registration → seen by {watchers} SSE watchers ({rounds} registrations, {} samples)",
        ms.len()
    );
    println!("| p50 | p90 | p99 | max |\n|---:|---:|---:|---:|");
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        ms[ms.len() - 1]
    );
    drop(client_rt);
    drop(server_rt);
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn bench_scale() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_msakit-registry"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--default-ttl",
            "5m",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let instances = 100_000u64;
    let (registered_in, rate, errors, idle_rss, loaded_rss) = client_rt.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("{url}/health")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let idle_rss = rss_mib(child.id());
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (client, url, next) = (client.clone(), url.clone(), Arc::clone(&next));
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= instances {
                            return;
                        }
                        let r = client
                            .put(format!("{url}/v1/services/svc-{}/instances/i-{i}", i % 1000))
                            .json(&json!({"host": "10.1.2.3", "port": 8080, "zone": "eu-1", "metadata": {"version": "1.4.2"}}))
                            .send()
                            .await
                            .unwrap();
                        assert!(r.status().is_success());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let registered_in = started.elapsed();
        let loaded_rss = rss_mib(child.id());
        // Sustained heartbeats at a fixed target rate of 20,000/s for 10 s.
        let target = 20_000u64;
        let seconds = 10u64;
        let sent = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let workers = 64u64;
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                let (client, url, sent, errors) = (client.clone(), url.clone(), Arc::clone(&sent), Arc::clone(&errors));
                tokio::spawn(async move {
                    let per_worker = target / workers;
                    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / per_worker as f64));
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    let mut i = w;
                    while started.elapsed() < Duration::from_secs(seconds) {
                        ticks.tick().await;
                        let id = i % instances;
                        let r = client
                            .put(format!("{url}/v1/services/svc-{}/instances/i-{id}/heartbeat", id % 1000))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().is_success() => {}
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                        i += workers * 7919;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let rate = sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        (registered_in, rate, errors.load(Ordering::Relaxed), idle_rss, loaded_rss)
    });
    let after_rss = rss_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    println!("\n## Scale: {instances} instances in 1,000 services (the real binary)");
    println!("| measure | value |\n|---|---:|");
    println!(
        "| registered in (64 concurrent clients) | {:.1} s ({:.0}/s) |",
        registered_in.as_secs_f64(),
        instances as f64 / registered_in.as_secs_f64()
    );
    println!(
        "| RSS idle / with 100k instances / after heartbeats | {idle_rss:.0} / {loaded_rss:.0} / {after_rss:.0} MiB |"
    );
    println!("| sustained heartbeats, target 20,000/s for 10 s | {rate:.0}/s, {errors} errors |");
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks one part.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    if "throughput".contains(&filter) || filter.is_empty() {
        bench_throughput();
    }
    if "propagation".contains(&filter) || filter.is_empty() {
        bench_propagation();
    }
    if "scale".contains(&filter) || filter.is_empty() {
        bench_scale();
    }
}
