//! A future cut off at a time limit, whose timer is armed only when the future first waits.
//!
//! A call that completes at its first poll reads no clock and registers no timer, and nothing
//! allocates. A relative limit therefore counts from the first wait (a first poll cannot be
//! interrupted anyway); an absolute one is exact.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// When a [`Deadline`] cuts its future off.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Never.
    None,
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
        #[pin]
        timer: Timer,
        limit: Limit,
    }
}

pin_project! {
    #[project = TimerProj]
    enum Timer {
        Idle,
        Armed { #[pin] sleep: Sleep },
    }
}

impl<F> Deadline<F> {
    pub(crate) fn new(inner: F, limit: Limit) -> Self {
        Self {
            inner,
            timer: Timer::Idle,
            limit,
        }
    }
}

impl<F: Future> Future for Deadline<F> {
    /// `None` when the limit passed first.
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(Some(output));
        }
        if let TimerProj::Idle = this.timer.as_mut().project() {
            let sleep = match *this.limit {
                Limit::None => return Poll::Pending,
                Limit::After(duration) => tokio::time::sleep(duration),
                Limit::At(instant) => tokio::time::sleep_until(instant),
            };
            this.timer.set(Timer::Armed { sleep });
        }
        match this.timer.project() {
            TimerProj::Armed { sleep } => sleep.poll(cx).map(|()| None),
            TimerProj::Idle => Poll::Pending,
        }
    }
}
