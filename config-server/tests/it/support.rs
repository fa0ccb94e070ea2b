//! Starts real config servers on port 0 in temp dirs.

use std::path::Path;
use std::time::Duration;

use msakit_config_server::ConfigServerConfig;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A test key (base64 of 32 bytes).
pub(crate) const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A config on `dir` with a secrets key and a fast keep-alive.
pub(crate) fn config_in(dir: &Path) -> ConfigServerConfig {
    let mut config = ConfigServerConfig {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    config.secrets.key = Some(KEY.into());
    config.watch.keep_alive = Duration::from_millis(200);
    config.shutdown_grace = Duration::from_secs(2);
    config
}

/// A running config server.
pub(crate) struct TestServer {
    pub(crate) url: String,
    pub(crate) client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), msakit_config_server::ServerError>>>,
}

impl TestServer {
    pub(crate) async fn start(config: ConfigServerConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(msakit_config_server::run(listener, config, async {
            let _ = stopped.await;
        }));
        TestServer {
            url,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// PUTs a document; returns the response.
    pub(crate) async fn put(&self, doc: &str, content_type: &str, body: &str) -> reqwest::Response {
        self.client
            .put(self.at(&format!("/v1/config/{doc}")))
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// PUTs a YAML document and asserts it was accepted; returns the new version.
    pub(crate) async fn put_yaml(&self, doc: &str, body: &str) -> u64 {
        let response = self.put(doc, "application/yaml", body).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        response.json::<Value>().await.unwrap()["version"]
            .as_u64()
            .unwrap()
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.at(path)).send().await.unwrap()
    }

    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.at(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub(crate) async fn resolve(&self, path: &str) -> Value {
        self.get_json(&format!("/v1/resolve/{path}")).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Reads SSE events (`event:` name and JSON `data:`) from a response body.
pub(crate) struct SseStream {
    response: reqwest::Response,
    buffer: String,
}

impl SseStream {
    pub(crate) async fn open(client: &reqwest::Client, url: &str) -> SseStream {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        SseStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's data, within `timeout`.
    pub(crate) async fn next(&mut self, timeout: Duration) -> Value {
        tokio::time::timeout(timeout, async {
            loop {
                while let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                        return serde_json::from_str(data).unwrap();
                    }
                }
                let chunk = self.response.chunk().await.unwrap().expect("stream open");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event in time")
    }
}
