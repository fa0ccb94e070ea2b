//! A real HTTP dependency on a loopback port, whose health the test controls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::oneshot;

/// How the dependency answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Health {
    /// 200 at once.
    Healthy = 0,
    /// 503 at once.
    Failing = 1,
    /// 200 after two seconds.
    Slow = 2,
}

#[derive(Default)]
struct Shared {
    health: AtomicU8,
    requests: AtomicU64,
}

/// A running dependency; stops when dropped.
pub(crate) struct Dependency {
    pub(crate) url: String,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl Dependency {
    /// Starts the dependency on 127.0.0.1, port 0.
    pub(crate) async fn start() -> Dependency {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/", get(answer))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Dependency {
            url,
            shared,
            _stop: stop,
        }
    }

    pub(crate) fn set(&self, health: Health) {
        self.shared.health.store(health as u8, Ordering::SeqCst);
    }

    /// Requests that reached the dependency.
    pub(crate) fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

async fn answer(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    match shared.health.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        1 => StatusCode::SERVICE_UNAVAILABLE,
        _ => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StatusCode::OK
        }
    }
}

/// Waits until `condition` holds, polling, or panics after `timeout`.
pub(crate) async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
