//! Circuit-breaker settings, with Resilience4j's names and defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::InvalidConfig;
use crate::invalid_config::{check_nonzero, check_percentage, check_positive};

/// How the closed-state window counts calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SlidingWindowType {
    /// The last `sliding_window_size` calls.
    #[default]
    CountBased,
    /// The calls of the last `sliding_window_size` seconds.
    TimeBased,
}

/// Growth of the OPEN-state wait on repeated trips without a successful recovery in between.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStateBackoff {
    /// Each further trip multiplies the wait by this factor (at least 1).
    pub multiplier: f64,
    /// The wait never grows beyond this.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

/// Circuit-breaker configuration.
///
/// Every field has a default; in YAML, durations are written as `500ms`, `30s`, `2m`.
///
/// ```yaml
/// failure_rate_threshold: 50
/// slow_call_rate_threshold: 80
/// slow_call_duration_threshold: 2s
/// sliding_window_type: time_based
/// sliding_window_size: 10
/// minimum_number_of_calls: 20
/// wait_duration_in_open_state: 30s
/// open_state_backoff: { multiplier: 2.0, max_wait: 5m }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Percentage of failed calls (0–100, exclusive of 0) at or above which the breaker opens.
    /// Default 50.
    pub failure_rate_threshold: f32,
    /// Percentage of slow calls at or above which the breaker opens. Default 100.
    pub slow_call_rate_threshold: f32,
    /// A call taking at least this long counts as slow. Default none: slow calls are not
    /// tracked, and a call in CLOSED reads no clock at all. (Resilience4j tracks them by default
    /// with 60 s and a 100% rate, which almost never trips but costs two clock reads per call.)
    #[serde(with = "humantime_serde")]
    pub slow_call_duration_threshold: Option<Duration>,
    /// Count-based or time-based window. Default count-based.
    pub sliding_window_type: SlidingWindowType,
    /// Calls (count-based) or seconds (time-based) in the window. Default 100.
    pub sliding_window_size: u32,
    /// No rate is computed, and so no trip happens, before this many calls are in the window.
    /// Default 100.
    pub minimum_number_of_calls: u32,
    /// How many probe calls HALF_OPEN admits; the excess is rejected at once. Default 10.
    pub permitted_number_of_calls_in_half_open_state: u32,
    /// After this long in HALF_OPEN without a verdict (say, a probe that never returns), the
    /// breaker opens again, so a lost probe cannot wedge it. Zero waits forever. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub max_wait_duration_in_half_open_state: Duration,
    /// How long OPEN rejects calls before admitting probes. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub wait_duration_in_open_state: Duration,
    /// Optional growth of the OPEN wait on repeated trips. Default none.
    pub open_state_backoff: Option<OpenStateBackoff>,
    /// Move OPEN → HALF_OPEN on a timer instead of on the next call. Default false.
    pub automatic_transition_from_open_to_half_open_enabled: bool,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration_threshold: None,
            sliding_window_type: SlidingWindowType::CountBased,
            sliding_window_size: 100,
            minimum_number_of_calls: 100,
            permitted_number_of_calls_in_half_open_state: 10,
            max_wait_duration_in_half_open_state: Duration::from_secs(60),
            wait_duration_in_open_state: Duration::from_secs(60),
            open_state_backoff: None,
            automatic_transition_from_open_to_half_open_enabled: false,
        }
    }
}

/// The largest window accepted: a million calls, or a day of one-second buckets.
const MAX_WINDOW: u32 = 1_000_000;
const MAX_TIME_WINDOW_SECS: u32 = 86_400;

impl CircuitBreakerConfig {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        check_percentage("failure_rate_threshold", self.failure_rate_threshold)?;
        check_percentage("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        if let Some(threshold) = self.slow_call_duration_threshold {
            check_nonzero("slow_call_duration_threshold", threshold)?;
        }
        check_positive("sliding_window_size", self.sliding_window_size.into())?;
        let max = match self.sliding_window_type {
            SlidingWindowType::CountBased => MAX_WINDOW,
            SlidingWindowType::TimeBased => MAX_TIME_WINDOW_SECS,
        };
        if self.sliding_window_size > max {
            return Err(InvalidConfig::new(
                "sliding_window_size",
                format!("must be at most {max}"),
            ));
        }
        check_positive(
            "minimum_number_of_calls",
            self.minimum_number_of_calls.into(),
        )?;
        check_positive(
            "permitted_number_of_calls_in_half_open_state",
            self.permitted_number_of_calls_in_half_open_state.into(),
        )?;
        if self.permitted_number_of_calls_in_half_open_state > MAX_WINDOW {
            return Err(InvalidConfig::new(
                "permitted_number_of_calls_in_half_open_state",
                format!("must be at most {MAX_WINDOW}"),
            ));
        }
        check_nonzero(
            "wait_duration_in_open_state",
            self.wait_duration_in_open_state,
        )?;
        if let Some(backoff) = &self.open_state_backoff {
            if !(backoff.multiplier.is_finite() && backoff.multiplier >= 1.0) {
                return Err(InvalidConfig::new(
                    "open_state_backoff.multiplier",
                    format!("must be at least 1, got {}", backoff.multiplier),
                ));
            }
            if backoff.max_wait < self.wait_duration_in_open_state {
                return Err(InvalidConfig::new(
                    "open_state_backoff.max_wait",
                    "must be at least wait_duration_in_open_state",
                ));
            }
        }
        Ok(())
    }

    /// The OPEN wait after the `trip`-th consecutive trip (1-based).
    pub(crate) fn open_wait(&self, trip: u32) -> Duration {
        let base = self.wait_duration_in_open_state;
        match &self.open_state_backoff {
            None => base,
            Some(backoff) => {
                let factor = backoff
                    .multiplier
                    .powi(trip.saturating_sub(1).min(1_000) as i32);
                let secs = base.as_secs_f64() * factor;
                if secs.is_finite() && secs < backoff.max_wait.as_secs_f64() {
                    Duration::from_secs_f64(secs)
                } else {
                    backoff.max_wait
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        CircuitBreakerConfig::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let cases: Vec<(&str, CircuitBreakerConfig)> = vec![
            (
                "failure_rate_threshold",
                CircuitBreakerConfig {
                    failure_rate_threshold: 101.0,
                    ..Default::default()
                },
            ),
            (
                "failure_rate_threshold",
                CircuitBreakerConfig {
                    failure_rate_threshold: 0.0,
                    ..Default::default()
                },
            ),
            (
                "slow_call_rate_threshold",
                CircuitBreakerConfig {
                    slow_call_rate_threshold: f32::NAN,
                    ..Default::default()
                },
            ),
            (
                "sliding_window_size",
                CircuitBreakerConfig {
                    sliding_window_size: 0,
                    ..Default::default()
                },
            ),
            (
                "minimum_number_of_calls",
                CircuitBreakerConfig {
                    minimum_number_of_calls: 0,
                    ..Default::default()
                },
            ),
            (
                "permitted_number_of_calls_in_half_open_state",
                CircuitBreakerConfig {
                    permitted_number_of_calls_in_half_open_state: 0,
                    ..Default::default()
                },
            ),
            (
                "wait_duration_in_open_state",
                CircuitBreakerConfig {
                    wait_duration_in_open_state: Duration::ZERO,
                    ..Default::default()
                },
            ),
            (
                "open_state_backoff.multiplier",
                CircuitBreakerConfig {
                    open_state_backoff: Some(OpenStateBackoff {
                        multiplier: 0.5,
                        max_wait: Duration::from_secs(600),
                    }),
                    ..Default::default()
                },
            ),
        ];
        for (field, config) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn open_wait_grows_and_caps() {
        let config = CircuitBreakerConfig {
            wait_duration_in_open_state: Duration::from_secs(10),
            open_state_backoff: Some(OpenStateBackoff {
                multiplier: 2.0,
                max_wait: Duration::from_secs(60),
            }),
            ..Default::default()
        };
        let waits: Vec<u64> = (1..=5).map(|t| config.open_wait(t).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
        assert_eq!(config.open_wait(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn reads_from_yaml_with_defaults_for_the_rest() {
        let config: CircuitBreakerConfig = serde_yaml_ng::from_str(
            "failure_rate_threshold: 25\nsliding_window_type: time_based\nwait_duration_in_open_state: 5s\n",
        )
        .unwrap();
        assert_eq!(config.failure_rate_threshold, 25.0);
        assert_eq!(config.sliding_window_type, SlidingWindowType::TimeBased);
        assert_eq!(config.wait_duration_in_open_state, Duration::from_secs(5));
        assert_eq!(config.minimum_number_of_calls, 100);
        assert!(serde_yaml_ng::from_str::<CircuitBreakerConfig>("nonsense: 1").is_err());
    }
}
