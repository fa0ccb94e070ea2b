//! A whole resilience policy in the standard order,
//! `Retry(CircuitBreaker(RateLimiter(Timeout(Bulkhead(call)))))`, so users do not nest layers by
//! hand.
//!
//! Each part is optional. The order is Resilience4j's: every retry attempt passes the breaker
//! (so an open breaker stops retries from reaching the dependency) and is rate limited; the
//! timeout covers the wait for a bulkhead slot and the call itself; the breaker sees timeouts as
//! failures.

mod layer;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use layer::{BoxErrorFuture, BoxErrorLayer, BoxErrorService, PolicyLayer};

use crate::circuit_breaker::{Classify, FailOnError};
use crate::retry::{RetryOn, RetryOnTransient};
use crate::{
    Bulkhead, BulkheadConfig, CircuitBreaker, CircuitBreakerConfig, Error, InvalidConfig,
    RateLimiter, RateLimiterConfig, Retry, RetryConfig, Timeout, TimeoutConfig,
};

/// A policy's configuration: each part present or absent.
///
/// ```yaml
/// retry: { max_attempts: 3 }
/// circuit_breaker: { failure_rate_threshold: 50, minimum_number_of_calls: 20 }
/// timeout: { timeout: 800ms }
/// bulkhead: { max_concurrent_calls: 64 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The outermost part: retries.
    pub retry: Option<RetryConfig>,
    /// The circuit breaker around every attempt.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// The rate limit on every attempt.
    pub rate_limiter: Option<RateLimiterConfig>,
    /// The timeout on every attempt (including its wait for a bulkhead slot).
    pub timeout: Option<TimeoutConfig>,
    /// The innermost part: the concurrency cap.
    pub bulkhead: Option<BulkheadConfig>,
}

/// A composed policy. Cheap to clone; clones share every part's state.
///
/// `C` classifies attempt results for the breaker and `R` decides retries; both see this crate's
/// [`Error`], so a timeout or a rejection can be told from the call's own error.
#[derive(Debug, Clone)]
pub struct Policy<C = FailOnError, R = RetryOnTransient> {
    retry: Option<Retry<R>>,
    circuit_breaker: Option<CircuitBreaker<C>>,
    rate_limiter: Option<RateLimiter>,
    timeout: Option<Timeout>,
    bulkhead: Option<Bulkhead>,
}

impl Policy {
    /// Builds every configured part, naming each after `name`. A config error names the field with
    /// its section, e.g. `circuit_breaker.failure_rate_threshold`.
    pub fn from_config(name: &str, config: &PolicyConfig) -> Result<Self, InvalidConfig> {
        let name: Arc<str> = name.into();
        fn part<T, X>(
            section: &str,
            config: &Option<X>,
            build: impl FnOnce(X) -> Result<T, InvalidConfig>,
        ) -> Result<Option<T>, InvalidConfig>
        where
            X: Clone,
        {
            config
                .clone()
                .map(build)
                .transpose()
                .map_err(|e| e.within(section))
        }
        Ok(Self {
            retry: part("retry", &config.retry, |c| {
                Ok(Retry::new(Arc::clone(&name), c)?.retry_on(RetryOnTransient))
            })?,
            circuit_breaker: part("circuit_breaker", &config.circuit_breaker, |c| {
                CircuitBreaker::new(Arc::clone(&name), c)
            })?,
            rate_limiter: part("rate_limiter", &config.rate_limiter, |c| {
                RateLimiter::new(Arc::clone(&name), c)
            })?,
            timeout: part("timeout", &config.timeout, |c| {
                Timeout::new(Arc::clone(&name), c)
            })?,
            bulkhead: part("bulkhead", &config.bulkhead, |c| {
                Bulkhead::new(Arc::clone(&name), c)
            })?,
        })
    }

    /// An empty policy, to be filled with the `with_*` methods (for parts shared with other
    /// policies, or built elsewhere).
    pub fn empty() -> Self {
        Self {
            retry: None,
            circuit_breaker: None,
            rate_limiter: None,
            timeout: None,
            bulkhead: None,
        }
    }
}

impl<C, R> Policy<C, R> {
    /// Uses `retry` (its state stays shared with it) as the retry part.
    pub fn with_retry<Q>(self, retry: Retry<Q>) -> Policy<C, Q> {
        Policy {
            retry: Some(retry),
            circuit_breaker: self.circuit_breaker,
            rate_limiter: self.rate_limiter,
            timeout: self.timeout,
            bulkhead: self.bulkhead,
        }
    }

    /// Uses `breaker` as the circuit-breaker part.
    pub fn with_circuit_breaker<D>(self, breaker: CircuitBreaker<D>) -> Policy<D, R> {
        Policy {
            retry: self.retry,
            circuit_breaker: Some(breaker),
            rate_limiter: self.rate_limiter,
            timeout: self.timeout,
            bulkhead: self.bulkhead,
        }
    }

    /// Uses `rate_limiter` as the rate-limiter part.
    pub fn with_rate_limiter(mut self, rate_limiter: RateLimiter) -> Self {
        self.rate_limiter = Some(rate_limiter);
        self
    }

    /// Uses `timeout` as the timeout part.
    pub fn with_timeout(mut self, timeout: Timeout) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Uses `bulkhead` as the bulkhead part.
    pub fn with_bulkhead(mut self, bulkhead: Bulkhead) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// Classifies attempt results for the breaker with `classifier`.
    pub fn classify_with<D>(self, classifier: D) -> Policy<D, R> {
        Policy {
            retry: self.retry,
            circuit_breaker: self.circuit_breaker.map(|b| b.with_classifier(classifier)),
            rate_limiter: self.rate_limiter,
            timeout: self.timeout,
            bulkhead: self.bulkhead,
        }
    }

    /// Decides retries with `predicate`.
    pub fn retry_on<Q>(self, predicate: Q) -> Policy<C, Q> {
        Policy {
            retry: self.retry.map(|r| r.retry_on(predicate)),
            circuit_breaker: self.circuit_breaker,
            rate_limiter: self.rate_limiter,
            timeout: self.timeout,
            bulkhead: self.bulkhead,
        }
    }

    /// The retry part.
    pub fn retry(&self) -> Option<&Retry<R>> {
        self.retry.as_ref()
    }

    /// The circuit-breaker part.
    pub fn circuit_breaker(&self) -> Option<&CircuitBreaker<C>> {
        self.circuit_breaker.as_ref()
    }

    /// The rate-limiter part.
    pub fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.rate_limiter.as_ref()
    }

    /// The timeout part.
    pub fn timeout(&self) -> Option<&Timeout> {
        self.timeout.as_ref()
    }

    /// The bulkhead part.
    pub fn bulkhead(&self) -> Option<&Bulkhead> {
        self.bulkhead.as_ref()
    }

    /// Runs `f` through every part. `f` is called once per attempt.
    pub async fn call<F, Fut, T, E>(&self, mut f: F) -> Result<T, Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, Error<E>>,
        R: RetryOn<T, Error<E>>,
    {
        match &self.retry {
            Some(retry) => {
                retry
                    .run(|r| retry.predicate().decide(r), || self.attempt(f()))
                    .await
            }
            None => self.attempt(f()).await,
        }
    }

    /// One attempt: breaker, then rate limiter, timeout and bulkhead.
    ///
    /// Written flat, in one async fn: each nested async fn moved the result (and its own state)
    /// once more, and that shuffling cost more than the five parts' own work.
    async fn attempt<Fut, T, E>(&self, call: Fut) -> Result<T, Error<E>>
    where
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, Error<E>>,
    {
        let permit = match &self.circuit_breaker {
            Some(breaker) => Some(breaker.try_acquire()?),
            None => None,
        };
        let admitted = match &self.rate_limiter {
            Some(rate_limiter) => rate_limiter.acquire().await.map_err(Error::from),
            None => Ok(()),
        };
        let result = match admitted {
            Err(rejected) => Err(rejected),
            Ok(()) => {
                let bulkheaded = async {
                    let _slot = match &self.bulkhead {
                        Some(bulkhead) => Some(bulkhead.acquire().await?),
                        None => None,
                    };
                    call.await.map_err(Error::Inner)
                };
                match &self.timeout {
                    Some(timeout) => timeout
                        .run(bulkheaded)
                        .await
                        .unwrap_or_else(|e| Err(e.into())),
                    None => bulkheaded.await,
                }
            }
        };
        if let (Some(breaker), Some(permit)) = (&self.circuit_breaker, permit) {
            permit.record(breaker.classifier().classify(result.as_ref()));
        }
        result
    }

    /// This policy as one `tower::Layer`, in the same order.
    ///
    /// The layer's errors are boxed, so the breaker's classifier and the retry predicate of the
    /// layer work on `BoxError`; the defaults ([`FailOnError`], [`RetryOnTransient`]) do.
    pub fn layer(&self) -> PolicyLayer<C, R>
    where
        C: Clone,
        R: Clone,
    {
        PolicyLayer::new(self)
    }
}
