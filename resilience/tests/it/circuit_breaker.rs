//! The circuit breaker end to end: transitions with their events, automatic timers, lost probes,
//! half-open under heavy concurrency, no lost counts under threads, and a real HTTP dependency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use msakit_resilience::circuit_breaker::{
    CallOutcome, CircuitBreakerEventKind, OpenStateBackoff, SlidingWindowType,
};
use msakit_resilience::{CircuitBreaker, CircuitBreakerConfig, CircuitState, Error};
use tokio::time::Instant;

use crate::support::{Dependency, Health, wait_until};

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        sliding_window_size: 10,
        minimum_number_of_calls: 10,
        permitted_number_of_calls_in_half_open_state: 3,
        wait_duration_in_open_state: Duration::from_secs(5),
        max_wait_duration_in_half_open_state: Duration::from_secs(30),
        ..Default::default()
    }
}

async fn fail(breaker: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    breaker.call(|| async { Err("boom") }).await
}

async fn succeed(breaker: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    breaker.call(|| async { Ok(()) }).await
}

#[tokio::test(start_paused = true)]
async fn full_cycle_with_events() {
    let breaker = CircuitBreaker::new("cycle", config()).unwrap();
    let mut events = breaker.events();
    for _ in 0..10 {
        let _ = fail(&breaker).await;
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    match succeed(&breaker).await {
        Err(Error::CallNotPermitted(e)) => {
            assert_eq!(e.name(), "cycle");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
            let text = e.to_string();
            assert!(text.contains("'cycle'") && text.contains("OPEN"), "{text}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    for _ in 0..3 {
        succeed(&breaker).await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);

    let mut kinds = Vec::new();
    while let Some(event) = events.try_recv() {
        assert_eq!(&*event.breaker, "cycle");
        kinds.push(event.kind);
    }
    let transitions: Vec<_> = kinds
        .iter()
        .filter_map(|k| match k {
            CircuitBreakerEventKind::StateTransition { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed)
        ]
    );
    let count = |f: fn(&CircuitBreakerEventKind) -> bool| kinds.iter().filter(|k| f(k)).count();
    assert_eq!(
        count(|k| matches!(k, CircuitBreakerEventKind::Error { .. })),
        10
    );
    assert_eq!(
        count(|k| matches!(k, CircuitBreakerEventKind::Success { .. })),
        3
    );
    assert_eq!(
        count(|k| matches!(k, CircuitBreakerEventKind::NotPermitted)),
        1
    );
    assert_eq!(
        count(
            |k| matches!(k, CircuitBreakerEventKind::FailureRateExceeded { rate } if *rate == 100.0)
        ),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn automatic_transition_to_half_open_without_a_call() {
    let breaker = CircuitBreaker::new(
        "auto",
        CircuitBreakerConfig {
            automatic_transition_from_open_to_half_open_enabled: true,
            ..config()
        },
    )
    .unwrap();
    breaker.transition_to_open();
    tokio::time::sleep(Duration::from_millis(4_999)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn repeated_trips_back_off_the_open_wait() {
    let breaker = CircuitBreaker::new(
        "backoff",
        CircuitBreakerConfig {
            open_state_backoff: Some(OpenStateBackoff {
                multiplier: 2.0,
                max_wait: Duration::from_secs(15),
            }),
            ..config()
        },
    )
    .unwrap();
    breaker.transition_to_open();
    let mut waits = Vec::new();
    for _ in 0..4 {
        let Err(Error::CallNotPermitted(e)) = succeed(&breaker).await else {
            panic!("expected open");
        };
        let wait = e.retry_after().unwrap();
        waits.push(wait.as_secs());
        tokio::time::advance(wait).await;
        // Two failed probes of three (67% >= 50%) reopen the breaker.
        let _ = fail(&breaker).await;
        let _ = fail(&breaker).await;
        let _ = succeed(&breaker).await;
        assert_eq!(breaker.state(), CircuitState::Open);
    }
    assert_eq!(waits, [5, 10, 15, 15]);
}

#[tokio::test(start_paused = true)]
async fn half_open_max_wait_recovers_a_lost_probe() {
    let breaker = CircuitBreaker::new("lost", config()).unwrap();
    breaker.transition_to_half_open();
    // Three probes go out and never come back.
    let lost: Vec<_> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
    assert!(breaker.try_acquire().is_err());
    tokio::time::sleep(Duration::from_millis(30_001)).await;
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "the max wait reopened it"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    succeed(&breaker).await.unwrap();
    assert_eq!(
        breaker.state(),
        CircuitState::HalfOpen,
        "a fresh round of probes"
    );
    succeed(&breaker).await.unwrap();
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
    // The lost probes finally answer: they belong to an old round and change nothing.
    for permit in lost {
        permit.record(CallOutcome::Failure);
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().failed_calls, 0);
}

#[test]
fn half_open_never_admits_more_than_n_under_64_tasks() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let breaker = CircuitBreaker::new(
            "probes",
            CircuitBreakerConfig {
                permitted_number_of_calls_in_half_open_state: 5,
                ..config()
            },
        )
        .unwrap()
        .with_classifier(|_: Result<&(), &()>| CallOutcome::Ignored);
        for _ in 0..50 {
            breaker.transition_to_half_open();
            let in_flight = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let admitted = Arc::new(AtomicUsize::new(0));
            let barrier = Arc::new(tokio::sync::Barrier::new(64));
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (breaker, barrier) = (breaker.clone(), Arc::clone(&barrier));
                    let (in_flight, peak, admitted) = (
                        Arc::clone(&in_flight),
                        Arc::clone(&peak),
                        Arc::clone(&admitted),
                    );
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let _ = breaker
                            .call(|| async {
                                admitted.fetch_add(1, Ordering::SeqCst);
                                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                                peak.fetch_max(now, Ordering::SeqCst);
                                tokio::task::yield_now().await;
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                                // Never a verdict: probes are ignored, so they hand back
                                // their slot and the round goes on.
                                Err::<(), ()>(())
                            })
                            .await;
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            assert!(
                peak.load(Ordering::SeqCst) <= 5,
                "peak {}",
                peak.load(Ordering::SeqCst)
            );
            assert!(admitted.load(Ordering::SeqCst) >= 5);
        }
    });
}

#[test]
fn no_lost_counts_under_threads() {
    for window in [SlidingWindowType::CountBased, SlidingWindowType::TimeBased] {
        let breaker = CircuitBreaker::new(
            "stress",
            CircuitBreakerConfig {
                sliding_window_type: window,
                sliding_window_size: if window == SlidingWindowType::CountBased {
                    1_000_000
                } else {
                    3600
                },
                ..Default::default()
            },
        )
        .unwrap();
        breaker.transition_to_metrics_only();
        const THREADS: usize = 4;
        const CALLS: usize = 50_000;
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let breaker = &breaker;
                scope.spawn(move || {
                    for i in 0..CALLS {
                        let outcome = if (i + t) % 4 == 0 {
                            CallOutcome::Failure
                        } else {
                            CallOutcome::Success
                        };
                        breaker.try_acquire().unwrap().record(outcome);
                    }
                });
            }
        });
        let m = breaker.metrics();
        assert_eq!(m.buffered_calls, (THREADS * CALLS) as u64, "{window:?}");
        assert_eq!(m.failed_calls, (THREADS * CALLS / 4) as u64, "{window:?}");
    }
}

#[test]
fn a_full_ring_stays_exact_under_threads() {
    let breaker = CircuitBreaker::new(
        "ring",
        CircuitBreakerConfig {
            sliding_window_size: 100,
            minimum_number_of_calls: 100,
            ..Default::default()
        },
    )
    .unwrap();
    breaker.transition_to_metrics_only();
    for outcome in [CallOutcome::Failure, CallOutcome::Success] {
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..20_000 {
                        breaker.try_acquire().unwrap().record(outcome);
                    }
                });
            }
        });
        let m = breaker.metrics();
        assert_eq!(m.buffered_calls, 100);
        let expected = if outcome == CallOutcome::Failure {
            100
        } else {
            0
        };
        assert_eq!(m.failed_calls, expected);
    }
}

#[tokio::test]
async fn guards_a_real_http_dependency() {
    let dependency = Dependency::start().await;
    let client = reqwest::Client::new();
    let breaker = CircuitBreaker::new(
        "http",
        CircuitBreakerConfig {
            sliding_window_size: 10,
            minimum_number_of_calls: 10,
            permitted_number_of_calls_in_half_open_state: 2,
            wait_duration_in_open_state: Duration::from_millis(200),
            automatic_transition_from_open_to_half_open_enabled: true,
            ..Default::default()
        },
    )
    .unwrap()
    // A 5xx answer is a failure even though the transport call succeeded; a 4xx is not.
    .with_classifier(|r: Result<&reqwest::Response, &reqwest::Error>| match r {
        Ok(response) if response.status().is_server_error() => CallOutcome::Failure,
        Ok(response) if response.status().is_client_error() => CallOutcome::Ignored,
        Ok(_) => CallOutcome::Success,
        Err(_) => CallOutcome::Failure,
    });
    let get = || async { breaker.call(|| client.get(&dependency.url).send()).await };

    dependency.set(Health::Failing);
    for _ in 0..10 {
        get().await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let before = dependency.requests();
    for _ in 0..50 {
        assert!(matches!(get().await, Err(Error::CallNotPermitted(_))));
    }
    assert_eq!(
        dependency.requests(),
        before,
        "an open breaker sends nothing"
    );

    dependency.set(Health::Healthy);
    let started = Instant::now();
    wait_until(Duration::from_secs(5), || {
        breaker.state() == CircuitState::HalfOpen
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    get().await.unwrap();
    get().await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}
