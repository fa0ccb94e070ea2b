//! A future cut off at a time limit, whose timer is armed only when the future first waits.
//!
//! A call that completes at its first poll reads no clock, registers no timer and allocates
//! nothing. A relative limit therefore counts from the first wait (a first poll cannot be
//! interrupted anyway); an absolute one is exact. The timer lives on the heap once armed: kept
//! inline it would add 112 bytes to every caller's future for each deadline, and moving those
//! bytes costs every call more than one allocation costs the calls that wait.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// When a [`Deadline`] cuts its future off.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// This long after the future first waits.
    After(Duration),
    /// At this instant.
    At(Instant),
}

pin_project! {
    /// See the module documentation.
    pub(crate) struct Deadline<F> {
        #[pin]
        inner: F,
        // Armed at the first wait.
        timer: Option<Pin<Box<Sleep>>>,
        limit: Limit,
    }
}

impl<F> Deadline<F> {
    pub(crate) fn new(inner: F, limit: Limit) -> Self {
        Self {
            inner,
            timer: None,
            limit,
        }
    }
}

impl<F: Future> Future for Deadline<F> {
    /// `None` when the limit passed first.
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(Some(output));
        }
        let sleep = match (this.timer, *this.limit) {
            (Some(sleep), _) => sleep,
            (timer @ None, Limit::After(duration)) => {
                timer.insert(Box::pin(tokio::time::sleep(duration)))
            }
            (timer @ None, Limit::At(instant)) => {
                timer.insert(Box::pin(tokio::time::sleep_until(instant)))
            }
        };
        sleep.as_mut().poll(cx).map(|()| None)
    }
}
