//! Middleware that retries failed calls with backoff, bounded by a maximum number of attempts, an
//! overall deadline and a shared retry budget.

mod backoff;
mod budget;
mod layer;
mod predicate;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use backoff::Backoff;
pub use budget::{RetryBudget, RetryBudgetConfig};
pub use layer::{RetryLayer, RetryService};
pub use predicate::{RetryDecision, RetryOn, RetryOnError, RetryOnTransient};

use crate::deadline::{Deadline, Limit};
use crate::events::EventPublisher;
use crate::{Error, EventStream, InvalidConfig};

/// Retry configuration.
///
/// ```yaml
/// max_attempts: 4
/// backoff: { type: decorrelated_jitter, initial: 50ms }
/// max_delay: 2s
/// deadline: 5s
/// budget: { ttl: 10s, retry_ratio: 0.2, min_retries_per_second: 10 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 = never retry). Default 3.
    pub max_attempts: u32,
    /// Delay schedule between attempts. Default full jitter from 100 ms, doubling.
    pub backoff: Backoff,
    /// No single delay is longer than this. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Overall time for all attempts and delays; an attempt still running then is cancelled.
    /// Default none.
    #[serde(with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// The retry budget shared by every call; `null` disables it. Default 20% of requests plus 10
    /// per second over 10 s.
    pub budget: Option<RetryBudgetConfig>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::default(),
            max_delay: Duration::from_secs(10),
            deadline: None,
            budget: Some(RetryBudgetConfig::default()),
        }
    }
}

impl RetryConfig {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err(InvalidConfig::new(
                "max_attempts",
                format!("must be between 1 and 100, got {}", self.max_attempts),
            ));
        }
        self.backoff.validate()?;
        if let Some(deadline) = self.deadline {
            crate::invalid_config::check_nonzero("deadline", deadline)?;
        }
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        Ok(())
    }
}

/// Retrying ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineExceeded {
    /// Attempts started before the deadline.
    pub attempts: u32,
    /// The deadline that passed.
    pub deadline: Duration,
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadline of {} ms exceeded after {} attempt(s)",
            self.deadline.as_millis(),
            self.attempts
        )
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A retry policy. Cheap to clone; clones share the budget, metrics and events.
#[derive(Debug)]
pub struct Retry<P = RetryOnError> {
    shared: Arc<Shared>,
    predicate: P,
}

impl<P: Clone> Clone for Retry<P> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            predicate: self.predicate.clone(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    config: RetryConfig,
    budget: Option<RetryBudget>,
    succeeded_without_retry: AtomicU64,
    succeeded_with_retry: AtomicU64,
    failed_without_retry: AtomicU64,
    failed_with_retry: AtomicU64,
    retries: AtomicU64,
    denied_by_budget: AtomicU64,
    events: EventPublisher<RetryEvent>,
}

/// One thing that happened in a retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryEvent {
    /// The policy's name.
    pub retry: Arc<str>,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: RetryEventKind,
}

/// The kinds of retry events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RetryEventKind {
    /// Attempt `attempt` failed; the next starts after `delay`.
    Retry {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next one.
        delay: Duration,
    },
    /// The call succeeded after `attempts` attempts.
    Success {
        /// Attempts made.
        attempts: u32,
    },
    /// The call failed for good after `attempts` attempts (all used, or the deadline).
    Error {
        /// Attempts made.
        attempts: u32,
    },
    /// The result was not retryable.
    IgnoredError,
    /// A retry was refused because the budget is spent.
    BudgetExhausted {
        /// The attempt that would have been retried.
        attempt: u32,
    },
}

/// Counters since creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryMetrics {
    /// The policy's name.
    pub name: String,
    /// Calls that succeeded at the first attempt.
    pub succeeded_without_retry: u64,
    /// Calls that succeeded after at least one retry.
    pub succeeded_with_retry: u64,
    /// Calls that failed with a result not worth retrying.
    pub failed_without_retry: u64,
    /// Calls that failed after retries (attempts, budget or deadline exhausted).
    pub failed_with_retry: u64,
    /// Retries made.
    pub retries: u64,
    /// Retries refused by the budget.
    pub denied_by_budget: u64,
    /// Retries the budget would allow right now, if there is one.
    pub budget_remaining: Option<u64>,
}

impl Retry<RetryOnError> {
    /// A retry policy named `name` that retries every error.
    pub fn new(name: impl Into<Arc<str>>, config: RetryConfig) -> Result<Self, InvalidConfig> {
        config.validate()?;
        let budget = config.budget.as_ref().map(RetryBudget::new).transpose()?;
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.into(),
                config,
                budget,
                succeeded_without_retry: AtomicU64::new(0),
                succeeded_with_retry: AtomicU64::new(0),
                failed_without_retry: AtomicU64::new(0),
                failed_with_retry: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                denied_by_budget: AtomicU64::new(0),
                events: EventPublisher::new(),
            }),
            predicate: RetryOnError,
        })
    }
}

impl<P> Retry<P> {
    /// The same policy (shared budget and metrics) deciding with `predicate`.
    pub fn retry_on<Q>(&self, predicate: Q) -> Retry<Q> {
        Retry {
            shared: Arc::clone(&self.shared),
            predicate,
        }
    }

    /// Calls `f` until it succeeds, the predicate says stop, or attempts, budget or deadline run
    /// out. The last attempt's result is returned.
    pub async fn call<F, Fut, T, E>(&self, mut f: F) -> Result<T, Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: RetryOn<T, E>,
    {
        self.run(
            |result| match result {
                Ok(value) => self.predicate.decide(Ok(value)),
                Err(Error::Inner(e)) => self.predicate.decide(Err(e)),
                Err(_) => RetryDecision::Done,
            },
            || {
                let attempt = f();
                async move { attempt.await.map_err(Error::Inner) }
            },
        )
        .await
    }

    /// The retry loop, for results of any shape that can carry a [`DeadlineExceeded`].
    pub(crate) async fn run<T, X, F, Fut>(
        &self,
        decide: impl Fn(Result<&T, &X>) -> RetryDecision,
        mut attempt: F,
    ) -> Result<T, X>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, X>>,
        X: From<DeadlineExceeded>,
    {
        let shared = &*self.shared;
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
        let deadline = shared.config.deadline.map(|d| (Instant::now() + d, d));
        let mut attempts = 0;
        let mut previous_delay = Duration::ZERO;
        loop {
            attempts += 1;
            let result = match deadline {
                // Without a deadline the attempt runs bare: wrapping it for nothing costs a
                // poll and a move of its result on every call.
                None => attempt().await,
                Some((at, deadline)) => match Deadline::new(attempt(), Limit::At(at)).await {
                    Some(result) => result,
                    None => {
                        shared.finish(attempts, false);
                        return Err(DeadlineExceeded { attempts, deadline }.into());
                    }
                },
            };
            match shared.next_delay(
                attempts,
                previous_delay,
                decide(result.as_ref()),
                result.is_ok(),
                deadline.map(|(at, _)| at),
            ) {
                Some(delay) => {
                    previous_delay = delay;
                    // Boxed: a retry is the rare path, and the timer would otherwise sit in every
                    // caller's future.
                    Box::pin(tokio::time::sleep(delay)).await;
                }
                None => return result,
            }
        }
    }

    /// This policy as a `tower::Layer`.
    pub fn layer(&self) -> RetryLayer<P>
    where
        P: Clone,
    {
        RetryLayer::new(self.clone())
    }

    /// The predicate in use.
    pub fn predicate(&self) -> &P {
        &self.predicate
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The policy's configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// The budget shared by every call, if configured.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// Counters since creation.
    pub fn metrics(&self) -> RetryMetrics {
        let s = &self.shared;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RetryMetrics {
            name: s.name.to_string(),
            succeeded_without_retry: load(&s.succeeded_without_retry),
            succeeded_with_retry: load(&s.succeeded_with_retry),
            failed_without_retry: load(&s.failed_without_retry),
            failed_with_retry: load(&s.failed_with_retry),
            retries: load(&s.retries),
            denied_by_budget: load(&s.denied_by_budget),
            budget_remaining: s.budget.as_ref().map(RetryBudget::remaining),
        }
    }

    /// Subscribes to this policy's events.
    pub fn events(&self) -> EventStream<RetryEvent> {
        self.shared.events.subscribe()
    }
}

impl Shared {
    fn publish(&self, kind: RetryEventKind) {
        self.events.publish(|| RetryEvent {
            retry: Arc::clone(&self.name),
            at: Instant::now(),
            kind,
        });
    }

    /// After attempt `attempts`: the delay before the next one, or `None` to return this result.
    /// Keeps the metrics and publishes the events.
    fn next_delay(
        &self,
        attempts: u32,
        previous: Duration,
        decision: RetryDecision,
        ok: bool,
        deadline: Option<Instant>,
    ) -> Option<Duration> {
        let config = &self.config;
        let delay = match decision {
            RetryDecision::Done => {
                if !ok && attempts == 1 {
                    self.failed_without_retry.fetch_add(1, Ordering::Relaxed);
                    self.publish(RetryEventKind::IgnoredError);
                } else {
                    self.finish(attempts, ok);
                }
                return None;
            }
            RetryDecision::Retry => config.backoff.delay(attempts, previous, config.max_delay),
            RetryDecision::RetryAfter(delay) if delay <= config.max_delay => delay,
            RetryDecision::RetryAfter(_) => {
                self.finish(attempts, false);
                return None;
            }
        };
        let out_of_time = deadline.is_some_and(|d| Instant::now() + delay >= d);
        if attempts >= config.max_attempts || out_of_time {
            self.finish(attempts, false);
            return None;
        }
        if let Some(budget) = &self.budget {
            if !budget.try_withdraw() {
                self.denied_by_budget.fetch_add(1, Ordering::Relaxed);
                self.publish(RetryEventKind::BudgetExhausted { attempt: attempts });
                self.finish(attempts, false);
                return None;
            }
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.publish(RetryEventKind::Retry {
            attempt: attempts,
            delay,
        });
        Some(delay)
    }

    /// Counts a call that is over.
    fn finish(&self, attempts: u32, ok: bool) {
        let counter = match (ok, attempts > 1) {
            (true, false) => &self.succeeded_without_retry,
            (true, true) => &self.succeeded_with_retry,
            (false, false) => &self.failed_without_retry,
            (false, true) => &self.failed_with_retry,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.publish(if ok {
            RetryEventKind::Success { attempts }
        } else {
            RetryEventKind::Error { attempts }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn config() -> RetryConfig {
        RetryConfig {
            max_attempts: 4,
            backoff: Backoff::Constant {
                delay: Duration::from_millis(100),
            },
            budget: None,
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_with_the_backoff_between() {
        let retry = Retry::new("t", config()).unwrap();
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let result: Result<u32, Error<&str>> = retry
            .call(|| async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 { Err("no") } else { Ok(n) }
            })
            .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        let m = retry.metrics();
        assert_eq!((m.succeeded_with_retry, m.retries), (1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_with_the_last_error() {
        let retry = Retry::new("t", config()).unwrap();
        let calls = AtomicU32::new(0);
        let result: Result<(), Error<u32>> = retry
            .call(|| async { Err(calls.fetch_add(1, Ordering::SeqCst) + 1) })
            .await;
        assert!(matches!(result, Err(Error::Inner(4))));
        assert_eq!(retry.metrics().failed_with_retry, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_on_results_and_honours_a_server_delay() {
        let retry = Retry::new("t", config())
            .unwrap()
            .retry_on(|r: Result<&u32, &()>| match r {
                Ok(503) => RetryDecision::RetryAfter(Duration::from_secs(2)),
                _ => RetryDecision::Done,
            });
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let result = retry
            .call(|| async {
                Ok(if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    503
                } else {
                    200
                })
            })
            .await;
        assert_eq!(result.unwrap(), 200);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_delay_beyond_max_delay_ends_the_retries() {
        let retry = Retry::new("t", config())
            .unwrap()
            .retry_on(|_: Result<&(), &()>| RetryDecision::RetryAfter(Duration::from_secs(60)));
        let calls = AtomicU32::new(0);
        let _ = retry
            .call(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), ()>(())
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cancels_a_running_attempt() {
        let retry = Retry::new(
            "t",
            RetryConfig {
                deadline: Some(Duration::from_millis(250)),
                ..config()
            },
        )
        .unwrap();
        let start = Instant::now();
        let result: Result<(), Error<()>> = retry
            .call(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(())
            })
            .await;
        match result {
            Err(Error::DeadlineExceeded(e)) => assert_eq!(e.attempts, 1),
            other => panic!("expected a deadline error, got {other:?}"),
        }
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn no_backoff_is_started_that_would_end_past_the_deadline() {
        let retry = Retry::new(
            "t",
            RetryConfig {
                deadline: Some(Duration::from_millis(150)),
                ..config()
            },
        )
        .unwrap();
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let _ = retry
            .call(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), ()>(())
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "at 0 ms and 100 ms");
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    #[test]
    fn invalid_config_names_the_field() {
        let err = Retry::new(
            "t",
            RetryConfig {
                max_attempts: 0,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.field(), "max_attempts");
    }
}
