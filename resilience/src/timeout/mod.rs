//! Middleware that cancels a call that runs too long.
//!
//! The direct API wraps `tokio::time::timeout`; the layer wraps `tower::timeout::Timeout`, adding
//! metrics, events and this crate's [`Elapsed`] error.

mod layer;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use layer::{ResponseFuture, TimeoutLayer, TimeoutService};

use crate::deadline::{Deadline, Limit};
use crate::events::EventPublisher;
use crate::{Error, EventStream, InvalidConfig};

/// Timeout configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// How long one call may run. Default 1 s (as Resilience4j's TimeLimiter).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
        }
    }
}

impl TimeoutConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        crate::invalid_config::check_nonzero("timeout", self.timeout)
    }
}

/// A call ran past its timeout and was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elapsed {
    /// The timeout that passed.
    pub timeout: Duration,
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call timed out after {} ms", self.timeout.as_millis())
    }
}

impl std::error::Error for Elapsed {}

/// A timeout. Cheap to clone; clones share metrics and events.
#[derive(Debug, Clone)]
pub struct Timeout {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    timeout: Duration,
    finished: AtomicU64,
    timed_out: AtomicU64,
    events: EventPublisher<TimeoutEvent>,
}

/// One thing that happened in a timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeoutEvent {
    /// The timeout's name.
    pub timeout: Arc<str>,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: TimeoutEventKind,
}

/// The kinds of timeout events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutEventKind {
    /// The call finished in time (successfully or not).
    Finished,
    /// The call was cancelled at the timeout.
    TimedOut,
}

/// Counters since creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeoutMetrics {
    /// The timeout's name.
    pub name: String,
    /// Calls that finished in time.
    pub finished_calls: u64,
    /// Calls cancelled at the timeout.
    pub timed_out_calls: u64,
}

impl Timeout {
    /// A timeout named `name`.
    pub fn new(name: impl Into<Arc<str>>, config: TimeoutConfig) -> Result<Self, InvalidConfig> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.into(),
                timeout: config.timeout,
                finished: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
                events: EventPublisher::new(),
            }),
        })
    }

    /// Runs `f`, cancelling it at the timeout.
    pub async fn call<F, Fut, T, E>(&self, f: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(f()).await?.map_err(Error::Inner)
    }

    /// Runs `future` to completion or the timeout.
    pub(crate) async fn run<O>(&self, future: impl Future<Output = O>) -> Result<O, Elapsed> {
        let outcome = Deadline::new(future, Limit::After(self.shared.timeout)).await;
        self.shared.count(outcome.is_some());
        outcome.ok_or(Elapsed {
            timeout: self.shared.timeout,
        })
    }

    /// This timeout as a `tower::Layer`.
    pub fn layer(&self) -> TimeoutLayer {
        TimeoutLayer::new(self.clone())
    }

    /// The configured timeout.
    pub fn duration(&self) -> Duration {
        self.shared.timeout
    }

    /// Counters since creation.
    pub fn metrics(&self) -> TimeoutMetrics {
        TimeoutMetrics {
            name: self.shared.name.to_string(),
            finished_calls: self.shared.finished.load(Ordering::Relaxed),
            timed_out_calls: self.shared.timed_out.load(Ordering::Relaxed),
        }
    }

    /// Subscribes to this timeout's events.
    pub fn events(&self) -> EventStream<TimeoutEvent> {
        self.shared.events.subscribe()
    }
}

impl Shared {
    fn count(&self, in_time: bool) {
        let (counter, kind) = if in_time {
            (&self.finished, TimeoutEventKind::Finished)
        } else {
            (&self.timed_out, TimeoutEventKind::TimedOut)
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.events.publish(|| TimeoutEvent {
            timeout: Arc::clone(&self.name),
            at: Instant::now(),
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cancels_at_the_timeout() {
        let timeout = Timeout::new(
            "t",
            TimeoutConfig {
                timeout: Duration::from_millis(50),
            },
        )
        .unwrap();
        let slow: Result<(), Error<()>> = timeout
            .call(|| async {
                tokio::time::sleep(Duration::from_millis(51)).await;
                Ok(())
            })
            .await;
        assert!(matches!(slow, Err(Error::Timeout(Elapsed { .. }))));
        let fast: Result<u8, Error<()>> = timeout.call(|| async { Ok(1) }).await;
        assert_eq!(fast.unwrap(), 1);
        let m = timeout.metrics();
        assert_eq!((m.finished_calls, m.timed_out_calls), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_starts_at_the_first_wait_and_counts_from_there() {
        let timeout = Timeout::new(
            "t",
            TimeoutConfig {
                timeout: Duration::from_millis(50),
            },
        )
        .unwrap();
        let start = Instant::now();
        let waits: Result<(), Error<()>> = timeout
            .call(|| async {
                tokio::time::sleep(Duration::from_millis(49)).await;
                tokio::time::sleep(Duration::from_millis(49)).await;
                Ok(())
            })
            .await;
        assert!(waits.is_err());
        assert_eq!(start.elapsed(), Duration::from_millis(50));
    }

    #[test]
    fn zero_is_rejected() {
        let err = Timeout::new(
            "t",
            TimeoutConfig {
                timeout: Duration::ZERO,
            },
        )
        .unwrap_err();
        assert_eq!(err.field(), "timeout");
    }
}
