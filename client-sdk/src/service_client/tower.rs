//! The client as a `tower::Service`, for stacks that add their own layers.

use reqwest::Method;

use super::{CallError, ServiceClient};

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
