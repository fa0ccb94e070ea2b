//! The way through: find the route, answer CORS, authenticate, count against the rate limit,
//! check the body's size, rewrite, send on (streaming both bodies; upgrading to WebSocket when
//! asked), and hand back the target's answer with the route's header edits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use msakit_server_kit::ApiError;
use tower::{Layer, ServiceExt};
use tracing::Instrument;

use crate::counters::Refusal;
use crate::live::LiveRoutes;
use crate::routes::spec::RateLimitKey;
use crate::routes::{Route, canonical_path};
use crate::upstream::{OutgoingBody, Replay};

/// Bodies up to this size (by `Content-Length`) are held, so a failed attempt can be replayed
/// on another instance; larger or unsized ones stream through in one attempt.
pub(crate) const REPLAYABLE_BODY_BYTES: u64 = 64 * 1024;

/// What the proxy handler needs.
#[derive(Clone)]
pub(crate) struct Proxy {
    pub(crate) routes: Arc<LiveRoutes>,
    /// `https` when the gateway terminates TLS, for `X-Forwarded-Proto`.
    pub(crate) scheme: &'static str,
    pub(crate) metrics: msakit_server_kit::ServerMetrics,
}

/// Every request that is not the gateway's own.
pub(crate) async fn handle(
    State(proxy): State<Proxy>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let table = proxy.routes.current();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .map(str::to_owned);
    // Matched and sent on in one canonical form, so a target never reads a path the routes
    // did not see.
    let path: Arc<str> = match canonical_path(request.uri().path()) {
        Ok(path) => path.into(),
        Err(e) => {
            let response = ApiError::bad_request("invalid_path", e.to_string()).into_response();
            observe(&proxy, request.method(), "none", response.status(), started);
            return response;
        }
    };
    // A CORS preflight is matched as the request it announces.
    let announced = preflight_method(&request);
    let method = announced.as_ref().unwrap_or(request.method());
    let Some(route) = table
        .find(method, &path, request.headers(), host.as_deref())
        .cloned()
    else {
        let response = ApiError::not_found(format!("no route for {} {path}", request.method()))
            .into_response();
        observe(&proxy, request.method(), "none", response.status(), started);
        return response;
    };
    let _in_flight = route.counters.start();
    let span = tracing::debug_span!(
        target: msakit_server_kit::TRACE_TARGET,
        "route",
        otel.name = %format_args!("route {}", route.spec.id),
        gateway.route = %route.spec.id,
        gateway.target = ?route.upstream,
    );
    let response = async {
        match route.cors.clone() {
            Some(cors) => {
                let inner = {
                    let (route, proxy) = (Arc::clone(&route), proxy.clone());
                    tower::service_fn(move |request: Request| {
                        let (route, proxy, host) =
                            (Arc::clone(&route), proxy.clone(), host.clone());
                        let path = Arc::clone(&path);
                        async move {
                            Ok::<_, Infallible>(
                                forward(&proxy, &route, peer, host, &path, request).await,
                            )
                        }
                    })
                };
                match cors.layer(inner).oneshot(request).await {
                    Ok(response) => response.map(Body::new),
                    Err(never) => match never {},
                }
            }
            None => forward(&proxy, &route, peer, host, &path, request).await,
        }
    }
    .instrument(span)
    .await;
    route.counters.answered(response.status().as_u16());
    route.counters.took(started.elapsed());
    response
}

fn observe(proxy: &Proxy, method: &Method, route: &str, status: StatusCode, started: Instant) {
    (proxy.metrics.observer())(method.as_str(), route, status.as_u16(), started.elapsed());
}

fn preflight_method(request: &Request) -> Option<Method> {
    if request.method() != Method::OPTIONS || !request.headers().contains_key(header::ORIGIN) {
        return None;
    }
    request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
}

async fn forward(
    proxy: &Proxy,
    route: &Route,
    peer: SocketAddr,
    host: Option<String>,
    path: &str,
    mut request: Request,
) -> Response {
    let refuse = |refusal: Refusal, error: ApiError| {
        route.counters.refused(refusal);
        error.into_response()
    };
    let caller = match &route.auth {
        Some(auth) => match auth.authenticate(request.headers()).await {
            Ok(caller) => Some(caller),
            Err(error) => return refuse(Refusal::Unauthorized, error),
        },
        None => None,
    };
    if let Some(limiter) = &route.limiter {
        let ip = peer.ip().to_string();
        let key = match limiter.spec().key {
            RateLimitKey::Client => caller
                .as_ref()
                .and_then(|c| c.client.as_deref())
                .unwrap_or(&ip),
            RateLimitKey::Ip => &ip,
            RateLimitKey::Route => "",
        };
        if let Err(over) = limiter.check(key).await {
            let mut response = refuse(
                Refusal::RateLimited,
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "over the route's rate limit; retry in {} ms",
                        over.retry_after.as_millis().max(1)
                    ),
                ),
            );
            let seconds = over.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
    }
    let limit = route.filters.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return refuse(Refusal::TooLarge, too_large(limit));
    }
    let upgrade = handshake(request.method(), request.headers());
    let client_upgrade =
        (upgrade == Handshake::WebSocket).then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let original_path = path;
    let path = route.filters.path(path);
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    let arrival = Arrival {
        peer,
        host: host.as_deref(),
        path: original_path,
        upgrade,
    };
    let headers = upstream_headers(proxy, route, &parts.headers, &arrival, caller);
    // HTTP/2 bodies often come without a length: what counts is whether the stream ended.
    let has_body = !http_body::Body::is_end_stream(&body);
    let over_limit = Arc::new(AtomicBool::new(false));
    let body = if !has_body {
        OutgoingBody::Buffered(bytes::Bytes::new())
    } else if declared.is_some_and(|n| n <= REPLAYABLE_BODY_BYTES) {
        match axum::body::to_bytes(body, limit.min(REPLAYABLE_BODY_BYTES) as usize).await {
            Ok(bytes) => OutgoingBody::Buffered(bytes),
            Err(_) => return refuse(Refusal::TooLarge, too_large(limit)),
        }
    } else {
        OutgoingBody::Streamed(Box::pin(LimitedStream {
            inner: body.into_data_stream(),
            left: limit,
            over: Arc::clone(&over_limit),
        }))
    };
    let traceparent = parts
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let keyed = route
        .spec
        .call
        .idempotency_header
        .as_deref()
        .is_some_and(|name| parts.headers.contains_key(name));
    let replay = if keyed {
        Replay::Keyed
    } else {
        Replay::ByMethod
    };
    let result = route
        .upstream
        .send(
            parts.method.clone(),
            &path_and_query,
            headers,
            body,
            traceparent,
            replay,
        )
        .await;
    // A body cut at the limit: whatever the target made of it, the client sent too much.
    if over_limit.load(Ordering::Relaxed) {
        return refuse(Refusal::TooLarge, too_large(limit));
    }
    let upstream = match result {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(route = %route.spec.id, status = %error.status(), "upstream call failed");
            return refuse(Refusal::UpstreamFailed, error);
        }
    };
    let status = upstream.status();
    let mut response_headers = HeaderMap::with_capacity(upstream.headers().len());
    let switched = if status == StatusCode::SWITCHING_PROTOCOLS {
        Handshake::WebSocket
    } else {
        Handshake::None
    };
    copy_end_to_end(upstream.headers(), &mut response_headers, switched);
    route.filters.response_headers.apply(&mut response_headers);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return refuse(
                Refusal::UpstreamFailed,
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    "the target switched protocols unasked",
                ),
            );
        };
        let route_id = route.spec.id.clone();
        tokio::spawn(async move {
            let (client, target) = match tokio::join!(client_upgrade, upstream.upgrade()) {
                (Ok(client), Ok(target)) => (client, target),
                (client, target) => {
                    tracing::debug!(route = %route_id, client_ok = client.is_ok(), target_ok = target.is_ok(), "upgrade failed");
                    return;
                }
            };
            let mut client = hyper_util::rt::TokioIo::new(client);
            let mut target = target;
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut target).await {
                tracing::debug!(route = %route_id, error = %e, "upgraded connection ended");
            }
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        *response.headers_mut() = response_headers;
        return response;
    }
    // The target's body as it is (no stream adapter in between).
    let body: axum::http::Response<reqwest::Body> = upstream.into();
    let mut response = Response::new(Body::new(body.into_body()));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the route takes bodies of at most {limit} bytes"),
    )
}

/// Whether a request asks to switch to WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    /// An ordinary request.
    None,
    /// A WebSocket handshake: `Upgrade` and `Connection: upgrade` are passed on.
    WebSocket,
}

/// A WebSocket handshake (HTTP/1.1). Other upgrades (`h2c`, say) are not tunnelled: their
/// `Upgrade` header stays behind like any hop-by-hop header.
fn handshake(method: &Method, headers: &HeaderMap) -> Handshake {
    if wants_upgrade(method, headers) {
        Handshake::WebSocket
    } else {
        Handshake::None
    }
}

fn wants_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    let tokens = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    method == Method::GET
        && tokens(header::UPGRADE)
            .iter()
            .any(|t| t.eq_ignore_ascii_case("websocket"))
        && tokens(header::CONNECTION)
            .iter()
            .any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Copies `from` into `to` without hop-by-hop headers (nor those its `Connection` names);
/// `Upgrade` and `Connection: upgrade` are kept for an upgrade.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap, handshake: Handshake) {
    let upgrade = handshake == Handshake::WebSocket;
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for (name, value) in from {
        if HOP_BY_HOP.contains(name)
            || (name == header::UPGRADE && !upgrade)
            || named
                .iter()
                .any(|n| n == name.as_str() && !(upgrade && n == "upgrade"))
        {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
    if upgrade {
        to.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The headers the target gets.
/// Where a request came from and what it asked.
#[derive(Clone, Copy)]
struct Arrival<'a> {
    peer: SocketAddr,
    host: Option<&'a str>,
    /// The canonical path, before the route's filters.
    path: &'a str,
    upgrade: Handshake,
}

fn upstream_headers(
    proxy: &Proxy,
    route: &Route,
    incoming: &HeaderMap,
    arrival: &Arrival<'_>,
    caller: Option<crate::security::Caller>,
) -> HeaderMap {
    let Arrival {
        peer,
        host,
        path,
        upgrade,
    } = *arrival;
    let mut headers = HeaderMap::with_capacity(incoming.len() + 4);
    copy_end_to_end(incoming, &mut headers, upgrade);
    headers.remove(header::HOST);
    headers.remove("traceparent");
    // `Forwarded` from a client would be believed over the `X-Forwarded-*` set here.
    headers.remove(header::FORWARDED);
    // HTTP/2 allows `TE: trailers` (gRPC needs it), and only that.
    if incoming
        .get(header::TE)
        .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // Headers only the gateway may set, whatever the route.
    for name in route.asserted.iter() {
        headers.remove(name);
    }
    if let Some(caller) = caller {
        for (name, value) in caller.headers {
            headers.insert(name, value);
        }
    }
    let forwarded_for = match incoming
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(before) => format!("{before}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proxy.scheme));
    if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert("x-forwarded-host", host);
    }
    if let Some(prefix) = route
        .filters
        .stripped_prefix(path)
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        headers.insert("x-forwarded-prefix", prefix);
    }
    route.filters.request_headers.apply(&mut headers);
    headers
}

/// A request body that stops with an error past `left` bytes (and says so in `over`).
struct LimitedStream<S> {
    inner: S,
    left: u64,
    over: Arc<AtomicBool>,
}

impl<S> Stream for LimitedStream<S>
where
    S: Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin,
{
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let size = chunk.len() as u64;
                if size > self.left {
                    self.over.store(true, Ordering::Relaxed);
                    self.left = 0;
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "request body over the route's limit",
                    ))));
                }
                self.left -= size;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        from.insert("keep-alive", "timeout=5".parse().unwrap());
        from.insert("x-secret", "1".parse().unwrap());
        from.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        from.insert(header::UPGRADE, "websocket".parse().unwrap());
        from.append("x-kept", "a".parse().unwrap());
        from.append("x-kept", "b".parse().unwrap());
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to, Handshake::None);
        assert_eq!(to.len(), 2);
        assert_eq!(to.get_all("x-kept").iter().count(), 2);
        let mut upgraded = HeaderMap::new();
        from.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        copy_end_to_end(&from, &mut upgraded, Handshake::WebSocket);
        assert_eq!(upgraded[header::UPGRADE], "websocket");
        assert_eq!(upgraded[header::CONNECTION], "upgrade");
        assert!(wants_upgrade(&Method::GET, &from));
        assert!(!wants_upgrade(&Method::POST, &from));
    }
}
