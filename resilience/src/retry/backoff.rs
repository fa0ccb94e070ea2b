//! How long to wait before each retry: constant, exponential, and the two jittered variants from
//! AWS's "Exponential Backoff and Jitter" (full and decorrelated).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::InvalidConfig;
use crate::invalid_config::check_nonzero;

/// A backoff schedule. In YAML: `{ type: full_jitter, initial: 100ms, multiplier: 2 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Backoff {
    /// The same delay before every retry.
    Constant {
        /// The delay.
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// `initial × multiplier^(retry − 1)`.
    Exponential {
        /// Delay before the first retry.
        #[serde(with = "humantime_serde")]
        initial: Duration,
        /// Growth per retry (at least 1).
        multiplier: f64,
    },
    /// A uniformly random delay in `[0, initial × multiplier^(retry − 1)]`: spreads a herd of
    /// clients that failed together.
    FullJitter {
        /// Upper bound before the first retry.
        #[serde(with = "humantime_serde")]
        initial: Duration,
        /// Growth of the bound per retry (at least 1).
        multiplier: f64,
    },
    /// A uniformly random delay in `[initial, 3 × previous delay]`.
    DecorrelatedJitter {
        /// The smallest delay, and the first bound.
        #[serde(with = "humantime_serde")]
        initial: Duration,
    },
}

impl Default for Backoff {
    /// Exponential with full jitter from 100 ms, doubling.
    fn default() -> Self {
        Backoff::FullJitter {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        match self {
            Backoff::Constant { .. } => Ok(()),
            Backoff::Exponential {
                initial,
                multiplier,
            }
            | Backoff::FullJitter {
                initial,
                multiplier,
            } => {
                check_nonzero("backoff.initial", *initial)?;
                if multiplier.is_finite() && *multiplier >= 1.0 {
                    Ok(())
                } else {
                    Err(InvalidConfig::new(
                        "backoff.multiplier",
                        format!("must be at least 1, got {multiplier}"),
                    ))
                }
            }
            Backoff::DecorrelatedJitter { initial } => check_nonzero("backoff.initial", *initial),
        }
    }

    /// The delay before retry number `retry` (1-based), given the previous delay, capped at `max`.
    pub fn delay(&self, retry: u32, previous: Duration, max: Duration) -> Duration {
        let grown = |initial: Duration, multiplier: f64| {
            let secs =
                initial.as_secs_f64() * multiplier.powi(retry.saturating_sub(1).min(1_000) as i32);
            if secs.is_finite() && secs < max.as_secs_f64() {
                Duration::from_secs_f64(secs)
            } else {
                max
            }
        };
        let delay = match *self {
            Backoff::Constant { delay } => delay,
            Backoff::Exponential {
                initial,
                multiplier,
            } => grown(initial, multiplier),
            Backoff::FullJitter {
                initial,
                multiplier,
            } => random_between(Duration::ZERO, grown(initial, multiplier)),
            Backoff::DecorrelatedJitter { initial } => {
                let upper = previous.max(initial).saturating_mul(3).min(max);
                random_between(initial.min(upper), upper)
            }
        };
        delay.min(max)
    }
}

fn random_between(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let span = (high - low).as_nanos().min(u64::MAX as u128) as u64;
    low + Duration::from_nanos(fastrand::u64(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn exponential_grows_and_caps() {
        let b = Backoff::Exponential {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
        };
        let delays: Vec<u128> = (1..=9)
            .map(|n| b.delay(n, Duration::ZERO, MAX).as_millis())
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(b.delay(u32::MAX, Duration::ZERO, MAX), MAX);
    }

    #[test]
    fn jitter_stays_in_its_bounds() {
        let full = Backoff::FullJitter {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
        };
        let decorrelated = Backoff::DecorrelatedJitter {
            initial: Duration::from_millis(100),
        };
        let mut previous = Duration::ZERO;
        for retry in 1..200 {
            let d = full.delay(retry % 6 + 1, Duration::ZERO, MAX);
            assert!(d <= Duration::from_millis(100 << (retry % 6)));
            let d = decorrelated.delay(retry, previous, MAX);
            assert!(d >= Duration::from_millis(100) && d <= MAX);
            assert!(d <= previous.max(Duration::from_millis(100)) * 3);
            previous = d;
        }
    }

    #[test]
    fn rejects_a_shrinking_multiplier() {
        let err = Backoff::Exponential {
            initial: Duration::from_millis(1),
            multiplier: 0.5,
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field(), "backoff.multiplier");
    }
}
