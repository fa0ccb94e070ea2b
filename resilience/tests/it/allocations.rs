//! The breaker's hot path allocates nothing: admit + record in CLOSED, directly and via `call`.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use msakit_resilience::circuit_breaker::CallOutcome;
use msakit_resilience::{CircuitBreaker, CircuitBreakerConfig};

#[test]
fn closed_admit_and_record_do_not_allocate() {
    for config in [
        CircuitBreakerConfig::default(),
        // Slow calls tracked, on the coarse clock.
        CircuitBreakerConfig {
            slow_call_duration_threshold: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        },
    ] {
        admit_and_record_without_allocating(config);
    }
}

fn admit_and_record_without_allocating(config: CircuitBreakerConfig) {
    let breaker = CircuitBreaker::new("alloc", config).unwrap();
    // Fill the window once, so steady state is measured.
    for _ in 0..200 {
        breaker.try_acquire().unwrap().record(CallOutcome::Success);
    }
    let info = allocation_counter::measure(|| {
        for i in 0..10_000 {
            let outcome = if i % 7 == 0 {
                CallOutcome::Failure
            } else {
                CallOutcome::Success
            };
            breaker.try_acquire().unwrap().record(outcome);
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}

#[test]
fn call_does_not_allocate() {
    let breaker = CircuitBreaker::new("alloc", CircuitBreakerConfig::default()).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let info = allocation_counter::measure(|| {
        for _ in 0..10_000 {
            let call = pin!(breaker.call(|| async { Ok::<u32, ()>(7) }));
            match call.poll(&mut cx) {
                Poll::Ready(Ok(7)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}

#[test]
fn a_five_part_policy_call_does_not_allocate() {
    use msakit_resilience::{Policy, PolicyConfig};
    let config: PolicyConfig = serde_yaml_ng::from_str(
        "{ retry: {}, circuit_breaker: {}, rate_limiter: { limit_for_period: 1000000 }, timeout: {}, bulkhead: {} }",
    )
    .unwrap();
    let policy = Policy::from_config("alloc", &config).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let info = allocation_counter::measure(|| {
        for _ in 0..10_000 {
            let call = pin!(policy.call(|| async { Ok::<u32, ()>(7) }));
            match call.poll(&mut cx) {
                Poll::Ready(Ok(7)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}
