//! Retry as a `tower::Layer`.
//!
//! The response future runs the same loop as [`Retry::call`], so the layer has the same budget,
//! deadline and metrics. It is boxed: one allocation per request, in exchange for not keeping a
//! second copy of the loop as a hand-written state machine.

use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service, ServiceExt};

use super::{Retry, RetryOn, RetryOnError};
use crate::BoxError;

/// Retries requests through the inner service. Requests must be `Clone`, the inner service too
/// (each attempt drives a clone to readiness, as `tower::retry` does).
#[derive(Debug, Clone)]
pub struct RetryLayer<P = RetryOnError> {
    retry: Retry<P>,
}

impl<P> RetryLayer<P> {
    /// A layer sharing `retry`'s budget and metrics.
    pub fn new(retry: Retry<P>) -> Self {
        Self { retry }
    }
}

impl<S, P: Clone> Layer<S> for RetryLayer<P> {
    type Service = RetryService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            retry: self.retry.clone(),
        }
    }
}

/// A service whose calls are retried; see [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct RetryService<S, P = RetryOnError> {
    inner: S,
    retry: Retry<P>,
}

impl<S, P, Req> Service<Req> for RetryService<S, P>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    S::Response: Send,
    P: RetryOn<S::Response, BoxError> + Clone + Send + Sync + 'static,
    Req: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The first attempt uses the service that was driven to readiness.
        let ready = self.inner.clone();
        let mut first = Some(std::mem::replace(&mut self.inner, ready));
        let spare = self.inner.clone();
        let retry = self.retry.clone();
        Box::pin(async move {
            retry
                .run(
                    |result| retry.predicate.decide(result),
                    move || {
                        let request = request.clone();
                        let ready = first.take();
                        let spare = spare.clone();
                        async move {
                            match ready {
                                Some(mut service) => {
                                    service.call(request).await.map_err(Into::into)
                                }
                                None => spare.oneshot(request).await.map_err(Into::into),
                            }
                        }
                    },
                )
                .await
        })
    }
}
