//! Config-server benchmarks, each against a baseline measured in the same run:
//!
//! 1. resolved-configuration reads over HTTP/1.1 keep-alive, against a bare axum handler that only
//!    answers 200;
//! 2. propagation: one write → seen by 1,000 SSE watchers, p50 / p99;
//! 3. durable writes per second (each one fsync'd before it is acknowledged), by 1 and by 16
//!    concurrent writers.
//!
//! `cargo bench -p msakit-config-server --bench config`. Server and load generator each run on a
//! single-threaded runtime, one core each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn serve_config(server_rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> String {
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = msakit_config_server::ConfigServerConfig {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    server_rt.spawn(msakit_config_server::run(
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

async fn put(client: &reqwest::Client, url: &str, doc: &str, body: String) {
    let r = client
        .put(format!("{url}/v1/config/{doc}"))
        .header("content-type", "application/yaml")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

fn document(prefix: &str, keys: usize) -> String {
    (0..keys)
        .map(|i| format!("{prefix}{i}: value-{i}\n"))
        .collect()
}

/// Requests per second over `duration` with `connections` keep-alive connections.
fn throughput(
    client_rt: &tokio::runtime::Runtime,
    url: String,
    connections: usize,
    duration: Duration,
) -> f64 {
    client_rt.block_on(async move {
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let (done, url) = (Arc::clone(&done), url.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    while started.elapsed() < duration {
                        let response = client.get(&url).send().await.unwrap();
                        assert!(response.status().is_success());
                        let _ = response.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
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

fn bench_reads(dir: &std::path::Path) {
    let server_rt = runtime();
    let client_rt = runtime();
    let url = serve_config(&server_rt, dir);
    let bare = serve_bare(&server_rt);
    client_rt.block_on(async {
        let client = reqwest::Client::new();
        put(
            &client,
            &url,
            "application/default/main",
            document("shared", 10),
        )
        .await;
        put(&client, &url, "orders/default/main", document("orders", 10)).await;
        put(&client, &url, "orders/dev/main", document("orders", 5)).await;
    });
    let duration = Duration::from_secs(3);
    let ceiling = throughput(
        &client_rt,
        format!("{bare}/v1/resolve/orders/dev/main"),
        32,
        duration,
    );
    let resolved = throughput(
        &client_rt,
        format!("{url}/v1/resolve/orders/dev/main"),
        32,
        duration,
    );
    println!(
        "\n## Reads, 32 keep-alive connections, {} s each",
        duration.as_secs()
    );
    println!("| request | bare axum 200 (ceiling) | config server | ratio |\n|---|---:|---:|---:|");
    println!(
        "| `GET /v1/resolve/orders/dev/main` (3 documents, 20 keys) | {ceiling:.0}/s | {resolved:.0}/s | {:.2}× |",
        resolved / ceiling
    );
}

/// A watcher on a raw TCP connection, so the load generator's own cost stays small.
struct RawWatcher {
    socket: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl RawWatcher {
    async fn open(addr: &str, path: &str) -> RawWatcher {
        use tokio::io::AsyncWriteExt;
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        RawWatcher {
            socket,
            buffer: Vec::new(),
        }
    }

    async fn until(&mut self, marker: &[u8]) -> Instant {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(at) = self.buffer.windows(marker.len()).position(|w| w == marker) {
                self.buffer.drain(..at + marker.len());
                return Instant::now();
            }
            let mut chunk = [0u8; 8192];
            let n = self.socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "stream closed");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

fn bench_propagation(dir: &std::path::Path) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let server_rt = runtime();
    let client_rt = runtime();
    let url = serve_config(&server_rt, dir);
    let watchers = 1000;
    let rounds = 20;
    let latencies = client_rt.block_on(async {
        let client = reqwest::Client::new();
        put(&client, &url, "prop/default/main", "round: 0\n".into()).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(watchers + 1));
        let (tx, _) = tokio::sync::broadcast::channel::<Instant>(64);
        let addr = url.trim_start_matches("http://").to_owned();
        let tasks: Vec<_> = (0..watchers)
            .map(|_| {
                let (barrier, mut starts, addr) =
                    (Arc::clone(&barrier), tx.subscribe(), addr.clone());
                tokio::spawn(async move {
                    let mut watcher = RawWatcher::open(&addr, "/v1/watch/prop/default/main").await;
                    watcher.until(b"event: config").await;
                    barrier.wait().await;
                    let mut seen = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let arrived = watcher.until(b"event: config").await;
                        let sent = starts.recv().await.unwrap();
                        seen.push(arrived.saturating_duration_since(sent));
                    }
                    seen
                })
            })
            .collect();
        barrier.wait().await;
        for round in 1..=rounds {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send(Instant::now());
            put(
                &client,
                &url,
                "prop/default/main",
                format!("round: {round}\n"),
            )
            .await;
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
        "\n## Propagation: write → seen by {watchers} SSE watchers ({rounds} writes, {} samples)",
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
}

fn bench_writes(dir: &std::path::Path) {
    let server_rt = runtime();
    let client_rt = runtime();
    let url = serve_config(&server_rt, dir);
    let duration = Duration::from_secs(3);
    println!(
        "\n## Durable writes (fsync before each acknowledgement), {} s each",
        duration.as_secs()
    );
    println!("| writers | writes/s |\n|---:|---:|");
    for writers in [1usize, 16] {
        let rate = client_rt.block_on(async {
            let done = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let tasks: Vec<_> = (0..writers)
                .map(|w| {
                    let (done, url) = (Arc::clone(&done), url.clone());
                    tokio::spawn(async move {
                        let client = reqwest::Client::new();
                        let mut n = 0;
                        while started.elapsed() < duration {
                            put(
                                &client,
                                &url,
                                &format!("w{w}/default/main"),
                                format!("n: {n}\n"),
                            )
                            .await;
                            n += 1;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
        });
        println!("| {writers} | {rate:.0} |");
    }
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    if "reads".contains(&filter) || filter.is_empty() {
        bench_reads(&dir.path().join("reads"));
    }
    if "propagation".contains(&filter) || filter.is_empty() {
        bench_propagation(&dir.path().join("propagation"));
    }
    if "writes".contains(&filter) || filter.is_empty() {
        bench_writes(&dir.path().join("writes"));
    }
}
