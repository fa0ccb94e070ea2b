//! Starts real registry servers on port 0 in temp dirs, and reads their SSE streams.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use msakit_registry::RegistryConfig;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A config with short leases and a fast sweeper, for tests.
pub(crate) fn fast_config() -> RegistryConfig {
    let mut config = RegistryConfig::default();
    config.lease.min_ttl = Duration::from_millis(100);
    config.lease.default_ttl = Duration::from_secs(15);
    config.sweep_interval = Duration::from_millis(20);
    config.shutdown_grace = Duration::from_secs(2);
    config.watch.keep_alive = Duration::from_millis(200);
    config
}

/// A running registry.
pub(crate) struct TestServer {
    pub(crate) url: String,
    pub(crate) client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), msakit_registry::ServerError>>>,
}

impl TestServer {
    pub(crate) async fn start(config: RegistryConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(msakit_registry::run(listener, config, async {
            let _ = stopped.await;
        }));
        TestServer {
            url,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts a server whose registrations live in `dir`.
    pub(crate) async fn start_in(dir: &Path) -> TestServer {
        let mut config = fast_config();
        config.data_dir = Some(dir.to_owned());
        TestServer::start(config).await
    }

    /// Shuts down gracefully and waits for the end.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub(crate) async fn register(&self, service: &str, id: &str, body: Value) -> reqwest::Response {
        self.client
            .put(self.at(&format!("/v1/services/{service}/instances/{id}")))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Registers `host:port` with a lease of `ttl_ms`; panics unless it worked.
    pub(crate) async fn up(&self, service: &str, id: &str, port: u16, ttl_ms: u64) {
        let response = self
            .register(
                service,
                id,
                json!({"host": "127.0.0.1", "port": port, "lease_ttl_ms": ttl_ms}),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    pub(crate) async fn heartbeat(&self, service: &str, id: &str) -> reqwest::StatusCode {
        self.client
            .put(self.at(&format!("/v1/services/{service}/instances/{id}/heartbeat")))
            .send()
            .await
            .unwrap()
            .status()
    }

    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.at(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub(crate) async fn instance_ids(&self, service: &str) -> Vec<String> {
        let body = self.get_json(&format!("/v1/services/{service}")).await;
        body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// An open SSE stream.
pub(crate) struct SseStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseStream {
    pub(crate) async fn open(
        client: &reqwest::Client,
        url: &str,
        last_event_id: Option<&str>,
    ) -> SseStream {
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseStream {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped); `None` when the stream ends.
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                event.data = serde_json::from_str(&data).unwrap();
                return Some(event);
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// The next event within `timeout`, or a panic.
    pub(crate) async fn expect(&mut self, timeout: Duration) -> SseEvent {
        tokio::time::timeout(timeout, self.next())
            .await
            .expect("an event in time")
            .expect("the stream is open")
    }
}

/// Waits until `condition` holds, polling, or panics after `timeout`.
pub(crate) async fn wait_until<F, Fut>(timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The body of a GET, retried for a few seconds until the server answers.
pub(crate) async fn wait_for_text(url: &str) -> String {
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(url).await {
            if let Ok(text) = response.text().await {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no answer from {url}");
}
