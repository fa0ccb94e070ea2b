//! The policy as one `tower::Layer`.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::layer::util::Stack;
use tower::util::Either;
use tower::{Layer, Service};

use super::Policy;
use crate::BoxError;
use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::rate_limiter::RateLimiterLayer;
use crate::retry::RetryLayer;
use crate::timeout::TimeoutLayer;

/// Each part, or in its place a layer that only boxes the error, so that both sides of every
/// `Either` have the same error type.
type Part<L> = Either<L, BoxErrorLayer>;

type Layers<C, R> = Stack<
    Part<BulkheadLayer>,
    Stack<
        Part<TimeoutLayer>,
        Stack<Part<RateLimiterLayer>, Stack<Part<CircuitBreakerLayer<C>>, Part<RetryLayer<R>>>>,
    >,
>;

/// A [`Policy`] as a `tower::Layer`: retry outermost, bulkhead innermost.
#[derive(Debug, Clone)]
pub struct PolicyLayer<C, R> {
    layers: Layers<C, R>,
}

fn part<L>(layer: Option<L>) -> Part<L> {
    layer.map_or(Either::Right(BoxErrorLayer), Either::Left)
}

impl<C: Clone, R: Clone> PolicyLayer<C, R> {
    pub(super) fn new(policy: &Policy<C, R>) -> Self {
        let retry = part(policy.retry.as_ref().map(|r| r.layer()));
        let breaker = part(policy.circuit_breaker.as_ref().map(|b| b.layer()));
        let rate_limiter = part(policy.rate_limiter.as_ref().map(|r| r.layer()));
        let timeout = part(policy.timeout.as_ref().map(|t| t.layer()));
        let bulkhead = part(policy.bulkhead.as_ref().map(|b| b.layer()));
        Self {
            layers: Stack::new(
                bulkhead,
                Stack::new(
                    timeout,
                    Stack::new(rate_limiter, Stack::new(breaker, retry)),
                ),
            ),
        }
    }
}

impl<S, C, R> Layer<S> for PolicyLayer<C, R>
where
    Layers<C, R>: Layer<S>,
{
    type Service = <Layers<C, R> as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.layers.layer(inner)
    }
}

/// A layer that only turns the inner service's error into a [`BoxError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BoxErrorLayer;

impl<S> Layer<S> for BoxErrorLayer {
    type Service = BoxErrorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BoxErrorService { inner }
    }
}

/// A service whose error is boxed; see [`BoxErrorLayer`].
#[derive(Debug, Clone)]
pub struct BoxErrorService<S> {
    inner: S,
}

impl<S, Req> Service<Req> for BoxErrorService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxErrorFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        BoxErrorFuture {
            inner: self.inner.call(request),
            _error: PhantomData,
        }
    }
}

pin_project! {
    /// Response future of [`BoxErrorService`].
    #[derive(Debug)]
    pub struct BoxErrorFuture<F, E> {
        #[pin]
        inner: F,
        _error: PhantomData<fn() -> E>,
    }
}

impl<F, T, E> Future for BoxErrorFuture<F, E>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(Into::into))
    }
}
