//! A call being built, and sent: headers, body, trace, retries allowed, fallbacks.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{CallError, CallErrorKind, ServiceClient};

/// A per-call fallback (see [`ServiceRequest::fallback`]).
pub(super) type CallFallback = Box<dyn FnOnce(&CallError) -> Option<reqwest::Response> + Send>;

/// Which instance answered a response, and after how many attempts; kept in the response's
/// extensions so a fallback can be told about a final server error.
#[derive(Debug, Clone)]
pub(super) struct Answered {
    pub(super) instance: String,
    pub(super) attempts: u32,
}

/// A per-service fallback: given the error, a response to answer with instead, or `None`.
pub type Fallback = Arc<dyn Fn(&CallError) -> Option<reqwest::Response> + Send + Sync>;

/// A request being built; see [`ServiceClient::request`]. It borrows the client, the service's
/// name and the path, so making one allocates nothing.
pub struct ServiceRequest<'a> {
    pub(super) client: &'a ServiceClient,
    /// Answers instead of an error, for this call.
    pub(super) fallback: Option<CallFallback>,
    pub(super) service: &'a str,
    pub(super) method: Method,
    pub(super) path: &'a str,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<bytes::Bytes>,
    /// A body read as it is sent: one attempt only, since it cannot be replayed.
    pub(super) stream: Option<reqwest::Body>,
    /// Set when the streamed body itself failed (the caller's fault, not the instance's).
    pub(super) stream_failed: Option<Arc<AtomicBool>>,
    pub(super) retryable: bool,
    /// The W3C trace this call belongs to; a new one when none is given.
    pub(super) trace_id: Option<u128>,
    /// The caller's span in that trace, from the incoming `traceparent`.
    pub(super) parent_span: Option<u64>,
    /// The caller's trace flags (sampled unless its `traceparent` says not).
    pub(super) trace_flags: opentelemetry::trace::TraceFlags,
    /// Why the request cannot be sent (a bad header, a body that cannot be serialised),
    /// reported by `send` before anything is sent.
    pub(super) invalid: Option<Box<CallErrorKind>>,
}

impl std::fmt::Debug for ServiceRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRequest")
            .field("service", &self.service)
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ServiceRequest<'_> {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.headers.append(name, value);
            }
            _ => {
                self.invalid
                    .get_or_insert_with(|| Box::new(CallErrorKind::InvalidHeader(name.to_owned())));
            }
        }
        self
    }

    /// Adds every header of `headers` (values kept as they are, binary ones included).
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers.extend(headers);
        self
    }

    /// A JSON body (kept, so attempts can replay it). One that cannot be serialised makes
    /// `send` fail without sending anything.
    pub fn json<B: serde::Serialize>(mut self, body: &B) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body = Some(bytes::Bytes::from(bytes)),
            Err(e) => {
                self.invalid
                    .get_or_insert_with(|| Box::new(CallErrorKind::InvalidBody(Box::new(e))));
            }
        }
        self.headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self
    }

    /// A raw body (kept, so attempts can replay it).
    pub fn body(mut self, body: impl Into<bytes::Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A body streamed to the instance as it is read (a large upload, say), never held whole.
    /// It cannot be replayed, so the call makes one attempt, whatever its method. If the stream
    /// itself fails (its sender went away, a limit cut it), the call fails with
    /// [`CallErrorKind::InvalidBody`] and neither the breaker nor the instance is blamed.
    pub fn streaming_body<S, E>(mut self, stream: S) -> Self
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let failed = Arc::new(AtomicBool::new(false));
        let watched = WatchedBody {
            inner: Box::pin(stream),
            failed: Arc::clone(&failed),
        };
        self.stream = Some(reqwest::Body::wrap_stream(watched));
        self.stream_failed = Some(failed);
        self.body = None;
        self.retryable = false;
        self
    }

    /// Continues the W3C trace of an incoming `traceparent` header (each attempt gets a span id
    /// of its own); without it, the call starts a new trace. When traces are recorded and no
    /// span of the caller's is current, the attempt spans are the incoming span's children.
    pub fn traceparent(mut self, incoming: &str) -> Self {
        let parts: Vec<&str> = incoming.split('-').collect();
        if parts.len() == 4 && parts[1].len() == 32 {
            self.trace_id = u128::from_str_radix(parts[1], 16)
                .ok()
                .filter(|&id| id != 0);
            self.parent_span = (parts[2].len() == 16)
                .then(|| u64::from_str_radix(parts[2], 16).ok())
                .flatten()
                .filter(|&id| id != 0);
            self.trace_flags = u8::from_str_radix(parts[3], 16)
                .map_or(opentelemetry::trace::TraceFlags::SAMPLED, |flags| {
                    opentelemetry::trace::TraceFlags::new(flags & 1)
                });
        }
        self
    }

    /// Allows retrying a method that is not idempotent by nature (say, a POST with an
    /// idempotency key).
    /// A streamed body is never retried (see [`streaming_body`](Self::streaming_body)).
    pub fn retryable(mut self) -> Self {
        self.retryable = self.stream.is_none();
        self
    }

    /// Sends, retrying on other instances as allowed.
    /// Answers with what `fallback` returns when the call fails (after retries), if it returns
    /// something; takes precedence over the service's fallback.
    pub fn fallback(
        mut self,
        fallback: impl FnOnce(&CallError) -> Option<reqwest::Response> + Send + 'static,
    ) -> Self {
        self.fallback = Some(Box::new(fallback));
        self
    }

    /// Sends, retrying on other instances as allowed; a failure goes to the call's fallback, then
    /// the service's.
    pub async fn send(mut self) -> Result<reqwest::Response, CallError> {
        let fallback = self.fallback.take();
        let result = self.attempts().await;
        // A server error after the last attempt is a failure too, for the fallbacks.
        let failed = match &result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        };
        if !failed {
            return result;
        }
        self.answer_failure(fallback, result)
    }

    /// A failed call's answer: the call's fallback, else the service's, else the failure. Out
    /// of line: no part of a call that succeeds.
    #[cold]
    #[inline(never)]
    pub(super) fn answer_failure(
        &self,
        fallback: Option<CallFallback>,
        result: Result<reqwest::Response, CallError>,
    ) -> Result<reqwest::Response, CallError> {
        let service_fallback = || {
            self.client
                .fallbacks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(self.service)
                .cloned()
        };
        let (error, original) = match result {
            Ok(response) => {
                if fallback.is_none() && service_fallback().is_none() {
                    return Ok(response);
                }
                let answered = response.extensions().get::<Answered>().cloned();
                let error = CallError {
                    service: self.service.to_owned(),
                    instance: answered.as_ref().map(|a| a.instance.clone()),
                    attempts: answered.map_or(0, |a| a.attempts),
                    kind: CallErrorKind::Status(response.status()),
                };
                (error, Some(response))
            }
            Err(error) => (error, None),
        };
        let answer = match fallback {
            Some(fallback) => fallback(&error),
            None => None,
        }
        .or_else(|| service_fallback().and_then(|f| f(&error)));
        match answer {
            Some(response) => {
                tracing::info!(service = %error.service, %error, "answered by the fallback");
                Ok(response)
            }
            None => original.ok_or(error),
        }
    }
}

/// A streamed body that says when it failed.
struct WatchedBody<S> {
    inner: Pin<Box<S>>,
    failed: Arc<AtomicBool>,
}

impl<S, E> futures_util::Stream for WatchedBody<S>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>>,
{
    type Item = Result<bytes::Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed.store(true, Ordering::Relaxed);
        }
        polled
    }
}
