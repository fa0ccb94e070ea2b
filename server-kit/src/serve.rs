//! Serving until shutdown: Ctrl-C or SIGTERM stops accepting, a token ends long-lived streams, and
//! requests still in flight get a grace period. Plus the request-latency middleware.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::ApiError;

/// Connection-level limits of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Open connections at once; one more is answered 503 (JSON) and closed.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (slowloris), on HTTP/1.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// How a server serves: connection limits, TLS, and how long shutdown waits.
#[derive(Clone)]
pub struct ServeOptions {
    /// Connection-level limits.
    pub limits: ConnectionLimits,
    /// Terminate TLS with this acceptor; plain HTTP when `None`.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// How long requests in flight may take once shutdown starts.
    pub grace: Duration,
    /// Where refused connections are counted.
    pub rejections: Arc<crate::Rejections>,
}

/// Serves `router` on `listener` until `shutdown` completes; then cancels `streams` (so watch
/// streams end) and waits up to `options.grace` for requests in flight.
///
/// Every request carries the peer's address as `axum::extract::ConnectInfo<SocketAddr>`. At most
/// `limits.max_connections` connections are served at once: the next is answered 503 with a JSON
/// error and closed (counted in `rejections`); an HTTP/1 client that
/// takes longer than `limits.header_read_timeout` to send its headers (or, with TLS, to finish
/// the handshake) is disconnected.
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    streams: CancellationToken,
    options: ServeOptions,
) -> std::io::Result<()> {
    let ServeOptions {
        limits,
        tls,
        grace,
        rejections,
    } = options;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Answers go out as written (a response written in parts is not held back by Nagle's
        // algorithm waiting for the client's delayed ACK).
        let _ = stream.set_nodelay(true);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            rejections.count(crate::Limit::Connections);
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open connections");
            let (builder, tls) = (builder.clone(), tls.clone());
            tokio::spawn(async move {
                let refuse = async move {
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                refuse_connection(&builder, TokioIo::new(stream)).await;
                            }
                        }
                        None => refuse_connection(&builder, TokioIo::new(stream)).await,
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), refuse).await;
            });
            continue;
        };
        let app = router.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                async move { app.call(request.map(axum::body::Body::new)).await }
            },
        );
        let (builder, tls, watcher) = (builder.clone(), tls.clone(), graceful.watcher());
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let connection = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service);
                            let _ = watcher.watch(connection.into_owned()).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; closing watch streams");
    streams.cancel();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "requests still in flight after the grace period; stopping anyway");
        }
    }
    Ok(())
}

/// Answers every request on a connection 503 (JSON) with `Connection: close`.
async fn refuse_connection<I>(builder: &Builder<TokioExecutor>, io: TokioIo<I>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let refuse = hyper::service::service_fn(|_| async {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "the server has as many connections open as it allows; retry later",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let _ = builder.serve_connection(io, refuse).await;
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
    // The matched path is shared, not copied.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    observer(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
