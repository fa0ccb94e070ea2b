//! Our side: `msakit-registry` and `msakit-config-server` over their native HTTP APIs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::load::{Measured, closed_loop};
use crate::process::Server;
use crate::workload::{Side, Sizes};

/// Our two servers and an HTTP client with enough keep-alive connections.
pub(crate) struct Ours {
    pub(crate) registry: Server,
    pub(crate) config: Server,
    http: reqwest::Client,
}

impl Ours {
    pub(crate) fn new(registry: Server, config: Server) -> Self {
        Self {
            registry,
            config,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain client builds"),
        }
    }
}

/// `PUT url` with `body`; whether it answered 2xx.
async fn put(http: &reqwest::Client, url: String, body: reqwest::Body, content_type: &str) -> bool {
    http.put(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

impl Side for Ours {
    fn registry_server(&self) -> &Server {
        &self.registry
    }

    fn config_server(&self) -> &Server {
        &self.config
    }

    async fn register(&self, round: u32, sizes: Sizes) -> Measured {
        let (http, base) = (self.http.clone(), self.registry.url.clone());
        closed_loop(
            sizes.concurrency,
            Duration::from_secs(600),
            sizes.instances,
            move |_, i| {
                let url = format!(
                    "{base}/v1/services/svc-{}/instances/r{round}-{i}",
                    i % sizes.services
                );
                let body = format!(
                    r#"{{"host":"10.{}.{}.{}","port":8080,"lease_ttl_ms":600000}}"#,
                    (i >> 16) & 255,
                    (i >> 8) & 255,
                    i & 255
                );
                let http = http.clone();
                async move { put(&http, url, body.into(), "application/json").await }
            },
        )
        .await
    }

    async fn heartbeats(&self, sizes: Sizes) -> Measured {
        let (http, base) = (self.http.clone(), self.registry.url.clone());
        closed_loop(sizes.concurrency, sizes.duration, u64::MAX, move |_, i| {
            let n = i.wrapping_mul(7919) % sizes.instances;
            let url = format!(
                "{base}/v1/services/svc-{}/instances/r0-{n}/heartbeat",
                n % sizes.services
            );
            let http = http.clone();
            async move { put(&http, url, reqwest::Body::from(""), "application/json").await }
        })
        .await
    }

    async fn prepare_lookup(&self) -> anyhow::Result<()> {
        for i in 0..10 {
            let url = format!("{}/v1/services/lookup/instances/l-{i}", self.registry.url);
            let body = format!(r#"{{"host":"10.9.0.{i}","port":8080,"lease_ttl_ms":300000}}"#);
            anyhow::ensure!(
                put(&self.http, url, body.into(), "application/json").await,
                "lookup setup"
            );
        }
        Ok(())
    }

    async fn lookup(&self, sizes: Sizes) -> Measured {
        let (http, url) = (
            self.http.clone(),
            format!("{}/v1/services/lookup", self.registry.url),
        );
        closed_loop(sizes.concurrency, sizes.duration, u64::MAX, move |_, _| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                match http.get(url).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await
    }

    async fn propagation(&self, round: u32, sizes: Sizes) -> anyhow::Result<Vec<Duration>> {
        let service = format!("prop{round}");
        let addr = self.registry.url.trim_start_matches("http://").to_owned();
        let connected = Arc::new(tokio::sync::Semaphore::new(0));
        let mut watchers = Vec::new();
        for _ in 0..sizes.watchers {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .context("watcher connect")?;
            watchers.push(tokio::spawn(raw_watch(
                stream,
                service.clone(),
                sizes.changes,
                Arc::clone(&connected),
            )));
        }
        let _all = tokio::time::timeout(
            Duration::from_secs(30),
            connected.acquire_many(sizes.watchers as u32),
        )
        .await
        .context("watchers connected in 30 s")??;
        let mut sent = Vec::new();
        for k in 0..sizes.changes {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let url = format!(
                "{}/v1/services/{service}/instances/w-{k}",
                self.registry.url
            );
            sent.push(Instant::now());
            anyhow::ensure!(
                put(
                    &self.http,
                    url,
                    r#"{"host":"10.8.0.1","port":80}"#.into(),
                    "application/json"
                )
                .await,
                "propagation write"
            );
        }
        let mut delays = Vec::new();
        for watcher in watchers {
            for (k, at) in watcher.await?? {
                delays.push(at.saturating_duration_since(sent[k]));
            }
        }
        delays.sort();
        Ok(delays)
    }

    async fn config_writes(&self, sizes: Sizes) -> Measured {
        let (http, base) = (self.http.clone(), self.config.url.clone());
        closed_loop(sizes.concurrency, sizes.duration, u64::MAX, move |worker, i| {
            let url = format!("{base}/v1/config/app-{worker}/default/main");
            let http = http.clone();
            async move { put(&http, url, format!("key: {i}\n").into(), "application/yaml").await }
        })
        .await
    }

    async fn config_reads(&self, sizes: Sizes) -> Measured {
        let (http, url) = (
            self.http.clone(),
            format!("{}/v1/config/app-0/default/main", self.config.url),
        );
        closed_loop(sizes.concurrency, sizes.duration, u64::MAX, move |_, _| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                match http.get(url).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await
    }
}

/// Reads `/v1/watch?service=…` on a raw connection and notes when each change `w-k` arrives.
async fn raw_watch(
    mut stream: tokio::net::TcpStream,
    service: String,
    changes: usize,
    connected: Arc<tokio::sync::Semaphore>,
) -> anyhow::Result<Vec<(usize, Instant)>> {
    stream
        .write_all(
            format!("GET /v1/watch?service={service} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut seen = Vec::new();
    let mut text = String::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut announced = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < changes {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await??;
        anyhow::ensure!(n > 0, "watch stream closed");
        let at = Instant::now();
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        if !announced && text.contains("event: snapshot") {
            announced = true;
            connected.add_permits(1);
        }
        while seen.len() < changes && text.contains(&format!("\"w-{}\"", seen.len())) {
            seen.push((seen.len(), at));
        }
        // Keep only a tail, so the search stays cheap and no marker is cut in two.
        if text.len() > 64 * 1024 {
            text.drain(..text.len() - 256);
        }
    }
    Ok(seen)
}
