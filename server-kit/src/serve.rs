//! Serving until shutdown: Ctrl-C or SIGTERM stops accepting, a token ends long-lived streams, and
//! requests still in flight get a grace period. Plus the request-latency middleware.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `shutdown` completes; then cancels `streams` (so watch
/// streams end) and waits up to `grace` for requests in flight.
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    streams: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let stop = streams.clone();
    let serve = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; closing watch streams");
            stop.cancel();
        })
        .into_future();
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => result,
        _ = async { streams.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "requests still in flight after the grace period; stopping anyway");
            Ok(())
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Told of every request: method, matched route, status and time taken.
pub type RequestObserver = Arc<dyn Fn(&str, &str, u16, Duration) + Send + Sync>;

/// Middleware timing every request for a latency histogram; use with
/// `axum::middleware::from_fn_with_state(observer, time_requests)`.
pub async fn time_requests(
    State(observer): State<RequestObserver>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    observer(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
