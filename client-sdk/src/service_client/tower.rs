//! The client as a `tower::Service`, for stacks that add their own layers: of a [`ServiceCall`],
//! or of a plain `http::Request` whose URI names the service as its host
//! (`http://payment/charges`).

use std::future::Future;
use std::pin::Pin;

use http_body_util::BodyExt;
use reqwest::Method;

use super::{CallError, CallErrorKind, ServiceClient, error::call_error};

/// One call, for the `tower::Service` face of [`ServiceClient`].
#[derive(Debug, Clone)]
pub struct ServiceCall {
    /// The service called.
    pub service: String,
    /// The method.
    pub method: Method,
    /// The path and query, e.g. `/pay?x=1`.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body, replayable across attempts.
    pub body: Option<Vec<u8>>,
}

impl tower::Service<ServiceCall> for ServiceClient {
    type Response = reqwest::Response;
    type Error = CallError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<reqwest::Response, CallError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), CallError>> {
        // Balancing, breaking and retrying happen per call; the client is always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ServiceCall) -> Self::Future {
        let client = self.clone();
        Box::pin(async move {
            let mut request = client.request(call.method, &call.service, &call.path);
            for (name, value) in &call.headers {
                request = request.header(name, value);
            }
            request.body = call.body.map(bytes::Bytes::from);
            request.send().await
        })
    }
}

/// `http::Request`s to `http://{service}{path}`: the URI's host is the service called (its
/// scheme and port are the instances', not the request's); the body is read first, so attempts
/// can replay it; an incoming `traceparent` continues its trace. The answer is the last attempt's
/// response as an `http::Response`.
impl<B> tower::Service<http::Request<B>> for ServiceClient
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<reqwest::Body>;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, CallError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), CallError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let client = self.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let Some(service) = parts.uri.host().map(str::to_owned) else {
                let shown = parts.uri.to_string();
                return Err(call_error(&shown, 0, None, CallErrorKind::NoService));
            };
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let kind = CallErrorKind::InvalidBody(e.into());
                    return Err(call_error(&service, 0, None, kind));
                }
            };
            let path = parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
            let trace = parts.headers.remove("traceparent");
            let mut call = client.request(parts.method, &service, &path);
            if let Some(trace) = trace.as_ref().and_then(|v| v.to_str().ok()) {
                call = call.traceparent(trace);
            }
            call.headers.extend(parts.headers);
            if !body.is_empty() {
                call.body = Some(body);
            }
            call.send().await.map(http::Response::from)
        })
    }
}
