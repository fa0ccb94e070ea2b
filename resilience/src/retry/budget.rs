//! A retry budget in the style of Finagle and Linkerd: retries may add at most a fixed ratio of
//! recent requests, plus a small floor per second, so a failing dependency cannot multiply load.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::InvalidConfig;
use crate::invalid_config::check_nonzero;
use crate::sliding_counters::SlidingCounters;

/// Retry-budget settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// How long a request or a retry is remembered. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Retries allowed as a fraction of requests within the TTL (0–1000). Default 0.2.
    pub retry_ratio: f32,
    /// Retries allowed per second regardless of traffic, so low-volume callers can still retry.
    /// Default 10.
    pub min_retries_per_second: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            retry_ratio: 0.2,
            min_retries_per_second: 10,
        }
    }
}

impl RetryBudgetConfig {
    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        check_nonzero("budget.ttl", self.ttl)?;
        if self.ttl > Duration::from_secs(3600) {
            return Err(InvalidConfig::new("budget.ttl", "must be at most 1h"));
        }
        if !(self.retry_ratio.is_finite() && (0.0..=1000.0).contains(&self.retry_ratio)) {
            return Err(InvalidConfig::new(
                "budget.retry_ratio",
                format!("must be between 0 and 1000, got {}", self.retry_ratio),
            ));
        }
        Ok(())
    }
}

/// Buckets per TTL: the budget forgets in steps of a tenth of its TTL.
const BUCKETS: usize = 10;

/// A retry budget, shared by every clone and every call of the [`Retry`](crate::Retry) that owns it.
///
/// Over any window of `ttl`, retries ≤ `retry_ratio` × requests + `min_retries_per_second` × ttl.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `[requests, retries]` over the TTL.
    counters: SlidingCounters<2>,
    ratio: f64,
    reserve: f64,
}

impl RetryBudget {
    /// A budget with these settings.
    pub fn new(config: &RetryBudgetConfig) -> Result<Self, InvalidConfig> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                counters: SlidingCounters::new(BUCKETS, config.ttl / BUCKETS as u32),
                ratio: f64::from(config.retry_ratio),
                reserve: f64::from(config.min_retries_per_second) * config.ttl.as_secs_f64(),
            }),
        })
    }

    /// Counts one original request.
    #[inline]
    pub fn deposit(&self) {
        let counters = &self.inner.counters;
        counters.add(counters.now(), [1, 0]);
    }

    /// Takes one retry from the budget; `false` when the budget is spent.
    ///
    /// The retry is counted first and taken back if it overdraws, so concurrent callers can never
    /// overdraw together.
    pub fn try_withdraw(&self) -> bool {
        let now = self.inner.counters.now();
        let tick = self.inner.counters.add(now, [0, 1]);
        let [requests, retries] = self.inner.counters.totals(now);
        let allowed = self.inner.ratio * requests as f64 + self.inner.reserve;
        if retries as f64 <= allowed {
            true
        } else {
            self.inner.counters.undo(tick, [0, 1]);
            false
        }
    }

    /// Retries still available right now.
    pub fn remaining(&self) -> u64 {
        let [requests, retries] = self.inner.counters.totals(self.inner.counters.now());
        let allowed = (self.inner.ratio * requests as f64 + self.inner.reserve).floor() as u64;
        allowed.saturating_sub(retries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn allows_ratio_times_requests_plus_the_reserve() {
        let budget = RetryBudget::new(&RetryBudgetConfig {
            ttl: Duration::from_secs(10),
            retry_ratio: 0.5,
            min_retries_per_second: 1,
        })
        .unwrap();
        for _ in 0..100 {
            budget.deposit();
        }
        let granted = (0..1000).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 50 + 10);
        assert_eq!(budget.remaining(), 0);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            budget.remaining(),
            10,
            "requests and retries expired with the TTL"
        );
    }

    #[test]
    fn rejects_a_negative_ratio() {
        let err = RetryBudget::new(&RetryBudgetConfig {
            retry_ratio: -1.0,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.field(), "budget.retry_ratio");
    }
}
