//! Test support for the servers' integration tests (feature `testing`): a server on port 0,
//! stopped gracefully or on drop; one reader of Server-Sent Events; `wait_until`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Resolves when the test asks its server to stop: the `shutdown` a server's `run` takes.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server running on `127.0.0.1:0` in this process.
pub struct TestServer<E> {
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    /// A client to call it with.
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E: std::fmt::Debug + Send + 'static> TestServer<E> {
    /// Binds a free loopback port and spawns `run(listener, stop)`: a server's `run`.
    pub async fn start<F, Fut>(run: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, Stop) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            listener,
            Box::pin(async {
                let _ = stopped.await;
            }),
        ));
        Self {
            url,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts the server down gracefully and waits until it has stopped, asserting it stopped
    /// without an error.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    /// The URL of `path` on the server.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A GET of `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.at(path)).send().await.unwrap()
    }

    /// The JSON of a GET of `path`, which must answer 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }
}

impl<E> Drop for TestServer<E> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// Its `id:`, if any.
    pub id: Option<String>,
    /// Its `event:` (`message` when absent).
    pub event: String,
    /// Its `data:`, as JSON.
    pub data: Value,
}

/// An open stream of Server-Sent Events.
pub struct SseStream {
    body: Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseStream {
    /// GETs `url` (resuming after `last_event_id`, if given); the answer must be a 200 event
    /// stream.
    pub async fn open(client: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped); `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseEvent> {
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
    pub async fn expect(&mut self, timeout: Duration) -> SseEvent {
        tokio::time::timeout(timeout, self.next())
            .await
            .expect("an event in time")
            .expect("the stream is open")
    }
}

/// Waits until `condition` holds, polling, or panics after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F)
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
pub async fn wait_for_text(url: &str) -> String {
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

/// A golden file of a server's internal formats: `{crate_dir}/tests/formats/{version}/{name}`,
/// as JSON.
pub fn golden_file(crate_dir: &str, version: u16, name: &str) -> Value {
    let path = format!("{crate_dir}/tests/formats/{version}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `value` with `"format_version": 1` added to the object at each of `pointers` (JSON
/// pointers): what a build that stamps its records writes where an older one wrote `value`.
pub fn stamped<P: AsRef<str>>(mut value: Value, pointers: &[P]) -> Value {
    for pointer in pointers {
        let pointer = pointer.as_ref();
        value
            .pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("no object at {pointer}"))
            .insert("format_version".into(), serde_json::json!(1));
    }
    value
}
