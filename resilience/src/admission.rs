//! The one shape of the bulkhead and rate-limiter layers: a request is admitted now, rejected now,
//! or waits for admission.
//!
//! Admission is decided in `call`, so the common cases (admitted, rejected) call the inner service
//! or fail without allocating. Only a request that must wait gets a boxed future, which waits and
//! then drives a clone of the inner service to readiness.

use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};

use crate::BoxError;

/// What a primitive says about a request arriving now.
#[derive(Debug)]
pub enum Admission<P> {
    /// Admitted, holding this permit until the response is ready.
    Now(P),
    /// Not now, but the request may wait.
    Wait,
    /// Rejected with this error.
    Rejected(BoxError),
}

/// A primitive that admits requests: implemented by the bulkhead and the rate limiter.
pub trait Admit: Clone + Send + Sync + 'static {
    /// Held while the request runs.
    type Permit: Send + 'static;

    /// Decides without waiting.
    fn try_admit(&self) -> Admission<Self::Permit>;

    /// Waits for admission, within the primitive's own limit.
    fn wait(&self) -> impl Future<Output = Result<Self::Permit, BoxError>> + Send;
}

/// A layer that admits requests through `A`.
#[derive(Debug, Clone)]
pub struct AdmissionLayer<A> {
    admit: A,
}

impl<A> AdmissionLayer<A> {
    pub(crate) fn new(admit: A) -> Self {
        Self { admit }
    }
}

impl<S, A: Clone> Layer<S> for AdmissionLayer<A> {
    type Service = AdmissionService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            admit: self.admit.clone(),
        }
    }
}

/// A service whose requests are admitted through `A`; see [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct AdmissionService<S, A> {
    inner: S,
    admit: A,
}

type Waiting<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, A, Req> Service<Req> for AdmissionService<S, A>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    A: Admit,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AdmissionFuture<S::Future, S::Response, A::Permit>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let kind = match self.admit.try_admit() {
            Admission::Now(permit) => Kind::Running {
                future: self.inner.call(request),
                permit: Some(permit),
            },
            Admission::Rejected(rejection) => Kind::Rejected {
                rejection: Some(rejection),
            },
            Admission::Wait => {
                let admit = self.admit.clone();
                let service = self.inner.clone();
                Kind::Waiting {
                    future: Box::pin(async move {
                        let _permit = admit.wait().await?;
                        service.oneshot(request).await.map_err(Into::into)
                    }),
                }
            }
        };
        AdmissionFuture { kind }
    }
}

pin_project! {
    /// Response future of [`AdmissionService`].
    pub struct AdmissionFuture<F, T, P> {
        #[pin]
        kind: Kind<F, T, P>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, T, P> {
        Running { #[pin] future: F, permit: Option<P> },
        Waiting { future: Waiting<T> },
        Rejected { rejection: Option<BoxError> },
    }
}

impl<F, T, E, P> Future for AdmissionFuture<F, T, P>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Running { future, permit } => {
                let result = std::task::ready!(future.poll(cx));
                permit.take();
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Waiting { future } => future.as_mut().poll(cx),
            KindProj::Rejected { rejection } => Poll::Ready(Err(rejection
                .take()
                .unwrap_or_else(|| "polled after completion".into()))),
        }
    }
}
