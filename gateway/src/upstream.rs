//! Where a route sends requests: a service by name (`lb://order`, through the SDK: discovery,
//! power of two choices, per-attempt timeouts, retries on other instances within a budget,
//! the breaker, ejection) or a fixed URL (timeouts, and retries of idempotent requests on
//! connection failures and 502/503/504).

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use msakit::{CallError, CallErrorKind, ServiceClient, ServiceClientOptions};
use msakit_server_kit::ApiError;

use crate::routes::spec::{CallSpec, UpstreamProtocol};

/// A request body read as it is sent.
pub(crate) type BodyStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
>;

/// A request's body on its way to the target.
pub(crate) enum OutgoingBody {
    /// Small enough to hold, so attempts can replay it.
    Buffered(bytes::Bytes),
    /// Streamed as it arrives: one attempt.
    Streamed(BodyStream),
}

/// A route's target.
#[derive(Clone)]
pub(crate) enum Upstream {
    /// A service in the registry.
    Service { name: String, client: ServiceClient },
    /// A fixed base URL.
    Fixed {
        base: reqwest::Url,
        http: reqwest::Client,
        /// HTTP/1.1 only, for WebSocket handshakes.
        http1: reqwest::Client,
        call: CallSpec,
    },
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Service { name, .. } => write!(f, "lb://{name}"),
            Upstream::Fixed { base, .. } => write!(f, "{base}"),
        }
    }
}

/// The SDK options of a route's calls.
pub(crate) fn service_options(call: &CallSpec) -> ServiceClientOptions {
    let options = ServiceClientOptions::default()
        .attempt_timeout(call.timeout)
        .deadline(call.deadline)
        .max_attempts(call.max_attempts.max(1));
    match &call.breaker {
        Some(breaker) => options.breaker(breaker.clone()),
        None => options,
    }
}

/// Whether a failed attempt may be made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// If the method is idempotent (GET, HEAD, PUT, DELETE, OPTIONS).
    ByMethod,
    /// Whatever the method: the request carries an idempotency key.
    Keyed,
}

/// The HTTP clients for fixed URLs, one per protocol.
#[derive(Clone)]
pub(crate) struct FixedClients {
    http1: reqwest::Client,
    auto: reqwest::Client,
    h2c: reqwest::Client,
}

impl FixedClients {
    pub(crate) fn new() -> Result<Self, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
        };
        Ok(Self {
            http1: builder().http1_only().build()?,
            auto: builder().build()?,
            h2c: builder().http2_prior_knowledge().build()?,
        })
    }

    pub(crate) fn get(&self, protocol: UpstreamProtocol) -> reqwest::Client {
        match protocol {
            UpstreamProtocol::Http1 => self.http1.clone(),
            UpstreamProtocol::Auto => self.auto.clone(),
            UpstreamProtocol::H2c => self.h2c.clone(),
        }
    }

    /// For WebSocket handshakes, which HTTP/2 cannot carry.
    pub(crate) fn http1(&self) -> reqwest::Client {
        self.http1.clone()
    }
}

impl Upstream {
    /// Sends a request; the response's headers have arrived, its body streams.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: OutgoingBody,
        traceparent: Option<&str>,
        replay: Replay,
    ) -> Result<reqwest::Response, ApiError> {
        match self {
            Upstream::Service { name, client } => {
                let mut request = client
                    .request(method, name, path_and_query)
                    .headers(headers);
                if let Some(traceparent) = traceparent {
                    request = request.traceparent(traceparent);
                }
                request = match body {
                    OutgoingBody::Buffered(bytes) if bytes.is_empty() => request,
                    OutgoingBody::Buffered(bytes) => request.body(bytes),
                    OutgoingBody::Streamed(stream) => request.streaming_body(stream),
                };
                if replay == Replay::Keyed {
                    request = request.retryable();
                }
                request.send().await.map_err(|e| call_failed(&e))
            }
            Upstream::Fixed {
                base,
                http,
                http1,
                call,
            } => {
                let http = if headers.contains_key(axum::http::header::UPGRADE) {
                    http1
                } else {
                    http
                };
                send_fixed(
                    http,
                    base,
                    call,
                    method,
                    path_and_query,
                    headers,
                    body,
                    traceparent,
                    replay,
                )
                .await
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_fixed(
    http: &reqwest::Client,
    base: &reqwest::Url,
    call: &CallSpec,
    method: Method,
    path_and_query: &str,
    headers: HeaderMap,
    body: OutgoingBody,
    traceparent: Option<&str>,
    replay: Replay,
) -> Result<reqwest::Response, ApiError> {
    let mut url = base.clone();
    let (path, query) = path_and_query
        .split_once('?')
        .map_or((path_and_query, None), |(p, q)| (p, Some(q)));
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(query);
    let idempotent = replay == Replay::Keyed
        || matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
    let (replayable, mut stream) = match body {
        OutgoingBody::Buffered(bytes) => (Some(bytes), None),
        OutgoingBody::Streamed(stream) => (None, Some(stream)),
    };
    let attempts = if idempotent && replayable.is_some() {
        call.max_attempts.max(1)
    } else {
        1
    };
    let deadline = Instant::now() + call.deadline;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = http
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        // The gateway's own span is the callee's parent when traces are recorded; else the
        // caller's trace goes on as it came.
        match msakit_server_kit::current_traceparent() {
            Some(own) => request = request.header("traceparent", own),
            None => {
                if let Some(traceparent) = traceparent {
                    request = request.header("traceparent", traceparent);
                }
            }
        }
        request = match (&replayable, stream.take()) {
            (Some(bytes), _) if !bytes.is_empty() => request.body(bytes.clone()),
            (_, Some(stream)) => request.body(reqwest::Body::wrap_stream(stream)),
            _ => request,
        };
        let timeout = call
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let result = tokio::time::timeout(timeout, request.send()).await;
        let retry = match &result {
            Ok(Ok(response)) => matches!(
                response.status(),
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            Ok(Err(_)) | Err(_) => true,
        };
        let pause = Duration::from_millis(fastrand::u64(10..=50 * u64::from(attempt)));
        if !retry || attempt >= attempts || Instant::now() + pause >= deadline {
            return match result {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) if e.is_connect() => Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unreachable",
                    format!("the target cannot be reached: {e}"),
                )),
                Ok(Err(e)) => Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    format!("the target failed: {e}"),
                )),
                Err(_) => Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    format!("the target did not answer within {timeout:?}"),
                )),
            };
        }
        tokio::time::sleep(pause).await;
    }
}

/// A failed call to a service, as the client is told.
fn call_failed(error: &CallError) -> ApiError {
    let (status, code) = match &error.kind {
        CallErrorKind::BreakerOpen(_) => (StatusCode::SERVICE_UNAVAILABLE, "breaker_open"),
        CallErrorKind::NoInstances => (StatusCode::SERVICE_UNAVAILABLE, "no_instances"),
        CallErrorKind::Discovery(_) => (StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable"),
        CallErrorKind::Deadline(_) | CallErrorKind::AttemptTimeout(_) => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
        }
        CallErrorKind::InvalidBody(_) => (StatusCode::BAD_REQUEST, "body_failed"),
        CallErrorKind::BudgetExhausted(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "retry_budget_exhausted")
        }
        _ => (StatusCode::BAD_GATEWAY, "upstream_failed"),
    };
    ApiError::new(status, code, error.to_string())
}
