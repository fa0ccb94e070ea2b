//! Real gateways, upstreams, a registry, a config server, a JWKS server and Redis on port 0 in
//! this process (Redis as a child process, when `redis-server` is installed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::StreamExt;
use msakit_gateway::GatewayConfig;
use msakit_gateway::routes::spec::{RouteSet, RouteSpec};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify, oneshot};

pub(crate) use msakit_server_kit::testing::wait_until;

/// A gateway running in this process.
pub(crate) struct Gateway {
    pub(crate) url: String,
    pub(crate) admin: String,
    pub(crate) client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), msakit_gateway::GatewayError>>>,
}

impl Gateway {
    /// Starts one with `config` (its addresses replaced by free loopback ports).
    pub(crate) async fn start(config: GatewayConfig) -> Gateway {
        Self::try_start(config).await.expect("the gateway starts")
    }

    /// Starts one, or says why it did not (a first route set that does not compile).
    pub(crate) async fn try_start(config: GatewayConfig) -> Result<Gateway, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let mut task = tokio::spawn(msakit_gateway::run(listener, admin, config, async {
            let _ = stopped.await;
        }));
        // Up once the admin API answers; or stopped with an error.
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{admin_url}/health"))
                .send()
                .await
                .is_ok()
            {
                return Ok(Gateway {
                    url,
                    admin: admin_url,
                    client,
                    stop: Some(stop),
                    task: Some(task),
                });
            }
            if task.is_finished() {
                return Err(format!("{:?}", (&mut task).await.unwrap()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway did not come up");
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.at(path)).send().await.unwrap()
    }

    /// The admin API's JSON at `path`.
    pub(crate) async fn admin_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "admin {path}");
        response.json().await.unwrap()
    }

    /// Stops gracefully; asserts a clean stop.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A config with these routes inline.
pub(crate) fn config_with(set: RouteSet) -> GatewayConfig {
    GatewayConfig {
        routes: set,
        shutdown_grace: Duration::from_secs(2),
        ..Default::default()
    }
}

/// A route set from YAML.
pub(crate) fn routes(yaml: &str) -> RouteSet {
    serde_yaml_ng::from_str(yaml).unwrap()
}

/// A route from YAML.
#[allow(dead_code)]
pub(crate) fn route(yaml: &str) -> RouteSpec {
    serde_yaml_ng::from_str(yaml).unwrap()
}

/// What an upstream shares with its test.
#[derive(Default)]
pub(crate) struct Upstream {
    /// Requests answered.
    pub(crate) hits: AtomicUsize,
    /// Lets `/sse` send its second event, and `/upload` see the upload end.
    pub(crate) go_on: Notify,
    /// Told when `/upload` has its first chunk.
    pub(crate) first_chunk: Notify,
    /// The last request's headers.
    pub(crate) last_headers: Mutex<BTreeMap<String, String>>,
}

/// An upstream on a free port: `/echo/**` answers what it got as JSON; `/sse` sends one event,
/// waits for `go_on`, sends another; `/ws` echoes WebSocket messages; `/upload` reports the
/// first chunk, then counts the bytes; `/fail` answers 503; `/slow` sleeps 2 s.
pub(crate) async fn upstream(name: &str) -> (SocketAddr, Arc<Upstream>) {
    let state = Arc::new(Upstream::default());
    let name = name.to_owned();
    let app = Router::new()
        .route("/sse", get(sse))
        .route("/ws", get(ws))
        .route("/upload", any(upload))
        .route(
            "/fail",
            any(|State(state): State<Arc<Upstream>>| async move {
                state.hits.fetch_add(1, Ordering::SeqCst);
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
            }),
        )
        .route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "slow"
            }),
        )
        .fallback(move |state: State<Arc<Upstream>>, request: Request| {
            echo(state, name.clone(), request)
        })
        .with_state(Arc::clone(&state));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(msakit_server_kit::serve_until(
        listener,
        app,
        std::future::pending(),
        tokio_util::sync::CancellationToken::new(),
        msakit_server_kit::ServeOptions {
            limits: Default::default(),
            tls: None,
            grace: Duration::from_secs(1),
            rejections: Arc::default(),
        },
    ));
    (address, state)
}

async fn echo(State(state): State<Arc<Upstream>>, name: String, request: Request) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    *state.last_headers.lock().await = headers.clone();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    axum::Json(json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_bytes": body.len(),
    }))
    .into_response()
}

async fn sse(State(state): State<Arc<Upstream>>) -> Response {
    let stream = futures_util::stream::unfold(0, move |step| {
        let state = Arc::clone(&state);
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>("data: first\n\n".to_owned()), 1)),
                1 => {
                    state.go_on.notified().await;
                    Some((Ok("data: second\n\n".to_owned()), 2))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            match message {
                Message::Text(text)
                    if socket
                        .send(Message::Text(format!("echo: {text}").into()))
                        .await
                        .is_err() =>
                {
                    return;
                }
                Message::Close(_) => return,
                _ => {}
            }
        }
    })
}

async fn upload(State(state): State<Arc<Upstream>>, request: Request) -> Response {
    let mut body = request.into_body().into_data_stream();
    let mut total = 0usize;
    let mut first = true;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return (axum::http::StatusCode::BAD_REQUEST, "broken body").into_response();
        };
        total += chunk.len();
        if first && total > 0 {
            first = false;
            state.first_chunk.notify_one();
        }
    }
    axum::Json(json!({"bytes": total})).into_response()
}

/// A registry on a free port.
pub(crate) async fn registry()
-> msakit_server_kit::testing::TestServer<msakit_registry::ServerError> {
    msakit_server_kit::testing::TestServer::start(|listener, stop| {
        msakit_registry::run(
            listener,
            msakit_registry::RegistryConfig {
                sweep_interval: Duration::from_millis(100),
                ..Default::default()
            },
            stop,
        )
    })
    .await
}

/// A config server on a free port, keeping its data in `dir`.
pub(crate) async fn config_server(
    dir: &Path,
) -> msakit_server_kit::testing::TestServer<msakit_config_server::ServerError> {
    let config = msakit_config_server::ConfigServerConfig {
        data_dir: dir.to_owned(),
        shutdown_grace: Duration::from_secs(1),
        ..Default::default()
    };
    msakit_server_kit::testing::TestServer::start(|listener, stop| {
        msakit_config_server::run(listener, config, stop)
    })
    .await
}

/// `redis-server` on a free port, stopped on drop; `None` (with a message) when not installed.
pub(crate) struct Redis {
    pub(crate) url: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub(crate) async fn start() -> Option<Redis> {
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(binary) = binary else {
            eprintln!("SKIPPED: redis-server is not installed (.ci/run installs it)");
            return None;
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        wait_until(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Some(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
