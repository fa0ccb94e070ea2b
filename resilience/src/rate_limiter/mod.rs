//! Middleware that caps the rate of calls, built on `governor`'s GCRA limiter.
//!
//! Unlike `tower::limit::RateLimit`, whose state lives in one service instance, the limit here
//! is shared by every clone of the [`RateLimiter`] and of its layer's services.

mod clock;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::Quota;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::admission::{Admission, AdmissionLayer, AdmissionService, Admit};
use crate::events::EventPublisher;
use crate::{BoxError, Error, EventStream, InvalidConfig};

/// The rate limiter as a `tower::Layer`; the excess fails with a boxed [`RateLimited`].
pub type RateLimiterLayer = AdmissionLayer<RateLimiter>;

/// A rate-limited service; see [`RateLimiterLayer`].
pub type RateLimiterService<S> = AdmissionService<S, RateLimiter>;
use clock::LimiterClock;

/// Rate-limiter configuration, with Resilience4j's names.
///
/// `limit_for_period` calls are allowed per `limit_refresh_period`, as a smooth rate with bursts
/// up to `limit_for_period` (GCRA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimiterConfig {
    /// Calls allowed per period, and the largest burst. Default 50.
    pub limit_for_period: u32,
    /// The period. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub limit_refresh_period: Duration,
    /// How long a call may wait for a permit; zero rejects at once. Default 5 s (Resilience4j's
    /// `timeoutDuration`).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        Self {
            limit_for_period: 50,
            limit_refresh_period: Duration::from_secs(1),
            max_wait: Duration::from_secs(5),
        }
    }
}

impl RateLimiterConfig {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.quota().map(|_| ())
    }

    fn quota(&self) -> Result<Quota, InvalidConfig> {
        let limit = NonZeroU32::new(self.limit_for_period)
            .ok_or_else(|| InvalidConfig::new("limit_for_period", "must be at least 1"))?;
        crate::invalid_config::check_nonzero("limit_refresh_period", self.limit_refresh_period)?;
        let interval = self.limit_refresh_period / self.limit_for_period;
        Quota::with_period(interval)
            .map(|q| q.allow_burst(limit))
            .ok_or_else(|| {
                InvalidConfig::new(
                    "limit_refresh_period",
                    "is too short for limit_for_period (less than 1 ns per call)",
                )
            })
    }
}

/// The rate limiter had no permit within the allowed wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The limiter's name.
    pub name: Arc<str>,
    /// When the next permit will be free; a caller can pass it on as `Retry-After`.
    pub retry_after: Duration,
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limiter '{}' does not permit further calls; next permit in {} ms",
            self.name,
            self.retry_after.as_millis()
        )
    }
}

impl std::error::Error for RateLimited {}

type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<Nanos>>;

/// A rate limiter. Cheap to clone; clones share the limit.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    config: RateLimiterConfig,
    gcra: Gcra,
    permitted: AtomicU64,
    rejected: AtomicU64,
    events: EventPublisher<RateLimiterEvent>,
}

/// One thing that happened in a rate limiter.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimiterEvent {
    /// The limiter's name.
    pub rate_limiter: Arc<str>,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: RateLimiterEventKind,
}

/// The kinds of rate-limiter events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimiterEventKind {
    /// A call got a permit.
    Permitted,
    /// A call was rejected.
    Rejected,
}

/// Counters since creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimiterMetrics {
    /// The limiter's name.
    pub name: String,
    /// Calls that got a permit.
    pub permitted_calls: u64,
    /// Calls rejected.
    pub rejected_calls: u64,
}

impl RateLimiter {
    /// A rate limiter named `name`.
    pub fn new(
        name: impl Into<Arc<str>>,
        config: RateLimiterConfig,
    ) -> Result<Self, InvalidConfig> {
        let quota = config.quota()?;
        let clock = LimiterClock(crate::clock::Clock::for_spans_of(
            config.limit_refresh_period,
        ));
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.into(),
                config,
                gcra: governor::RateLimiter::direct_with_clock(quota, clock),
                permitted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                events: EventPublisher::new(),
            }),
        })
    }

    /// Runs `f` once a permit is free, waiting up to `max_wait`.
    pub async fn call<F, Fut, T, E>(&self, f: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.acquire().await?;
        f().await.map_err(Error::Inner)
    }

    /// Takes a permit, waiting up to `max_wait` for one.
    pub async fn acquire(&self) -> Result<(), RateLimited> {
        match self.shared.try_take() {
            Ok(()) => self.shared.admit(Ok(())),
            // Waiting is the rare path: its timer lives on the heap, so that the futures of
            // every caller (and of a whole policy) stay small.
            Err(wait) => Box::pin(self.wait_for_permit(wait)).await,
        }
    }

    async fn wait_for_permit(&self, mut wait: Duration) -> Result<(), RateLimited> {
        let deadline = Instant::now() + self.shared.config.max_wait;
        loop {
            if Instant::now() + wait > deadline {
                return self.shared.admit(Err(wait));
            }
            tokio::time::sleep(wait).await;
            match self.shared.try_take() {
                Ok(()) => return self.shared.admit(Ok(())),
                Err(next) => wait = next,
            }
        }
    }

    /// This rate limiter as a `tower::Layer`.
    pub fn layer(&self) -> RateLimiterLayer {
        RateLimiterLayer::new(self.clone())
    }

    /// Counters since creation.
    pub fn metrics(&self) -> RateLimiterMetrics {
        RateLimiterMetrics {
            name: self.shared.name.to_string(),
            permitted_calls: self.shared.permitted.load(Ordering::Relaxed),
            rejected_calls: self.shared.rejected.load(Ordering::Relaxed),
        }
    }

    /// Subscribes to this limiter's events.
    pub fn events(&self) -> EventStream<RateLimiterEvent> {
        self.shared.events.subscribe()
    }
}

impl Admit for RateLimiter {
    type Permit = ();

    fn try_admit(&self) -> Admission<()> {
        match self.shared.try_take() {
            Err(wait) if wait <= self.shared.config.max_wait => Admission::Wait,
            outcome => match self.shared.admit(outcome) {
                Ok(()) => Admission::Now(()),
                Err(limited) => Admission::Rejected(Box::new(limited)),
            },
        }
    }

    async fn wait(&self) -> Result<(), BoxError> {
        Ok(self.acquire().await?)
    }
}

impl Shared {
    /// Takes a permit if one is free, else says how long until one is.
    #[inline]
    fn try_take(&self) -> Result<(), Duration> {
        self.gcra
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.gcra.clock().now()))
    }

    /// Counts the final outcome of an acquisition.
    fn admit(&self, outcome: Result<(), Duration>) -> Result<(), RateLimited> {
        let (counter, kind) = match outcome {
            Ok(()) => (&self.permitted, RateLimiterEventKind::Permitted),
            Err(_) => (&self.rejected, RateLimiterEventKind::Rejected),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.events.publish(|| RateLimiterEvent {
            rate_limiter: Arc::clone(&self.name),
            at: Instant::now(),
            kind,
        });
        outcome.map_err(|retry_after| RateLimited {
            name: Arc::clone(&self.name),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_wait: Duration) -> RateLimiter {
        RateLimiter::new(
            "r",
            RateLimiterConfig {
                limit_for_period: 10,
                limit_refresh_period: Duration::from_secs(1),
                max_wait,
            },
        )
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn allows_a_burst_then_one_per_interval() {
        let limiter = limiter(Duration::ZERO);
        for _ in 0..10 {
            limiter.acquire().await.unwrap();
        }
        let err = limiter.acquire().await.unwrap_err();
        assert_eq!(err.retry_after, Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(100)).await;
        limiter.acquire().await.unwrap();
        assert!(limiter.acquire().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_a_permit_within_max_wait() {
        let limiter = limiter(Duration::from_millis(250));
        for _ in 0..10 {
            limiter.acquire().await.unwrap();
        }
        let start = Instant::now();
        limiter.acquire().await.unwrap();
        limiter.acquire().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        limiter.acquire().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[test]
    fn invalid_config_names_the_field() {
        let err = RateLimiter::new(
            "r",
            RateLimiterConfig {
                limit_for_period: 0,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.field(), "limit_for_period");
        let err = RateLimiter::new(
            "r",
            RateLimiterConfig {
                limit_refresh_period: Duration::ZERO,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.field(), "limit_refresh_period");
    }
}
