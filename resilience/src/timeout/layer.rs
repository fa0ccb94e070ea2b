//! The timeout as a `tower::Layer`, built on `tower::timeout::Timeout`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{Elapsed, Timeout};
use crate::BoxError;

/// Cancels requests that run past the timeout, failing them with a boxed [`Elapsed`].
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    timeout: Timeout,
}

impl TimeoutLayer {
    /// A layer sharing `timeout`'s metrics.
    pub fn new(timeout: Timeout) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService {
            inner: tower::timeout::Timeout::new(inner, self.timeout.duration()),
            timeout: self.timeout.clone(),
        }
    }
}

/// A service with a timeout; see [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    inner: tower::timeout::Timeout<S>,
    timeout: Timeout,
}

impl<S, Req> Service<Req> for TimeoutService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<tower::timeout::future::ResponseFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
            timeout: self.timeout.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`TimeoutService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        timeout: Timeout,
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let timed_out = matches!(&result, Err(e) if e.is::<tower::timeout::error::Elapsed>());
        this.timeout.shared.count(!timed_out);
        Poll::Ready(result.map_err(|e| {
            if timed_out {
                Box::new(Elapsed {
                    timeout: this.timeout.duration(),
                })
            } else {
                e
            }
        }))
    }
}
