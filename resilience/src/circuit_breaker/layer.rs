//! The circuit breaker as a `tower::Layer`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{CallNotPermitted, CircuitBreaker, Classify, FailOnError, OwnedPermit};
use crate::BoxError;

/// Wraps a service in a [`CircuitBreaker`]; rejected calls fail with a boxed [`CallNotPermitted`]
/// without reaching the service.
///
/// The classifier sees the service's result with the error boxed (`Result<&Response, &BoxError>`).
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = FailOnError> {
    breaker: CircuitBreaker<C>,
}

impl<C> CircuitBreakerLayer<C> {
    /// A layer sharing `breaker`'s state.
    pub fn new(breaker: CircuitBreaker<C>) -> Self {
        Self { breaker }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// A service guarded by a circuit breaker; see [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S, C = FailOnError> {
    inner: S,
    breaker: CircuitBreaker<C>,
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.breaker.try_acquire_owned() {
            Ok(permit) => ResponseFuture {
                kind: Kind::Running {
                    future: self.inner.call(request),
                },
                permit: Some(permit),
                classifier: self.breaker.classifier().clone(),
            },
            Err(rejection) => ResponseFuture {
                kind: Kind::Rejected {
                    rejection: Some(rejection),
                },
                permit: None,
                classifier: self.breaker.classifier().clone(),
            },
        }
    }
}

pin_project! {
    /// Response future of [`CircuitBreakerService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        permit: Option<OwnedPermit>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Running { #[pin] future: F },
        Rejected { rejection: Option<CallNotPermitted> },
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Running { future } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(permit) = this.permit.take() {
                    permit.record(this.classifier.classify(result.as_ref()));
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { rejection } => Poll::Ready(Err(rejection.take().map_or_else(
                || "polled after completion".into(),
                |r| Box::new(r) as BoxError,
            ))),
        }
    }
}
