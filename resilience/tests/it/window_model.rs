//! Property tests: the breaker's windows and trip decision against a naive model that keeps every
//! call in a list.

use std::collections::VecDeque;
use std::time::Duration;

use msakit_resilience::circuit_breaker::{CallOutcome, SlidingWindowType};
use msakit_resilience::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Call {
    failed: bool,
    slow: bool,
    /// Milliseconds of paused time before the call starts.
    gap_ms: u64,
}

fn calls() -> impl Strategy<Value = Vec<Call>> {
    prop::collection::vec(
        (
            any::<bool>(),
            prop::bool::weighted(0.2),
            prop_oneof![Just(0u64), 0u64..1500],
        )
            .prop_map(|(failed, slow, gap_ms)| Call {
                failed,
                slow,
                gap_ms,
            }),
        1..120,
    )
}

/// What the naive model holds: (finish time in ms, failed, slow) of every call still in the window.
#[derive(Default)]
struct Model {
    calls: VecDeque<(u64, bool, bool)>,
}

impl Model {
    fn push(
        &mut self,
        window: SlidingWindowType,
        size: u64,
        now_ms: u64,
        failed: bool,
        slow: bool,
    ) {
        self.calls.push_back((now_ms, failed, slow));
        self.expire(window, size, now_ms);
    }

    fn expire(&mut self, window: SlidingWindowType, size: u64, now_ms: u64) {
        match window {
            SlidingWindowType::CountBased => {
                while self.calls.len() as u64 > size {
                    self.calls.pop_front();
                }
            }
            SlidingWindowType::TimeBased => {
                // One-second buckets: a call in second s counts until second s + size.
                let current = now_ms / 1000;
                self.calls.retain(|(at, ..)| at / 1000 + size > current);
            }
        }
    }

    fn counts(&self) -> (u64, u64, u64) {
        let calls = self.calls.len() as u64;
        let failed = self.calls.iter().filter(|c| c.1).count() as u64;
        let slow = self.calls.iter().filter(|c| c.2).count() as u64;
        (calls, failed, slow)
    }
}

const SLOW: Duration = Duration::from_millis(100);

fn run(
    window: SlidingWindowType,
    size: u32,
    minimum: u32,
    threshold: f32,
    calls: &[Call],
) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = CircuitBreakerConfig {
            sliding_window_type: window,
            sliding_window_size: size,
            minimum_number_of_calls: minimum,
            failure_rate_threshold: threshold,
            slow_call_rate_threshold: threshold,
            slow_call_duration_threshold: Some(SLOW),
            ..Default::default()
        };
        let breaker = CircuitBreaker::new("model", config).unwrap();
        let start = tokio::time::Instant::now();
        let mut model = Model::default();
        for call in calls {
            tokio::time::advance(Duration::from_millis(call.gap_ms)).await;
            let permit = match breaker.try_acquire() {
                Ok(permit) => permit,
                Err(_) => {
                    // Tripped: the model must agree that a threshold was reached.
                    let (n, failed, slow) = model.counts();
                    prop_assert!(n >= u64::from(minimum));
                    let rate = |part: u64| part as f64 * 100.0 / n as f64;
                    prop_assert!(
                        rate(failed) >= f64::from(threshold) || rate(slow) >= f64::from(threshold)
                    );
                    return Ok(());
                }
            };
            if call.slow {
                tokio::time::advance(SLOW).await;
            }
            permit.record(if call.failed {
                CallOutcome::Failure
            } else {
                CallOutcome::Success
            });
            let now_ms = start.elapsed().as_millis() as u64;
            model.push(window, u64::from(size), now_ms, call.failed, call.slow);
            let (n, failed, slow) = model.counts();
            let metrics = breaker.metrics();
            if breaker.state() == CircuitState::Closed {
                prop_assert_eq!(metrics.buffered_calls, n);
                prop_assert_eq!(metrics.failed_calls, failed);
                prop_assert_eq!(metrics.slow_calls, slow);
                // Still closed: the model must agree that no threshold was reached.
                if n >= u64::from(minimum) {
                    let rate = |part: u64| (part as f64 * 100.0 / n as f64) as f32;
                    prop_assert!(rate(failed) < threshold && rate(slow) < threshold);
                }
            } else {
                prop_assert_eq!(breaker.state(), CircuitState::Open);
                prop_assert!(n >= u64::from(minimum));
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn count_window_matches_the_model(calls in calls(), size in 1u32..20, minimum in 1u32..25, threshold in 1u32..=100) {
        run(SlidingWindowType::CountBased, size, minimum, threshold as f32, &calls)?;
    }

    #[test]
    fn time_window_matches_the_model(calls in calls(), size in 1u32..10, minimum in 1u32..25, threshold in 1u32..=100) {
        run(SlidingWindowType::TimeBased, size, minimum, threshold as f32, &calls)?;
    }
}
