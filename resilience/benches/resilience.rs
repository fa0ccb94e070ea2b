//! Overhead of the resilience primitives on a call that does nothing, against a bare call and
//! against the `failsafe` and `recloser` circuit breakers, measured in the same run.
//!
//! `cargo bench -p msakit-resilience`. Results and their reading are in BENCHMARKS.md.

use std::hint::black_box;
use std::pin::pin;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use msakit_resilience::circuit_breaker::CallOutcome;
use msakit_resilience::retry::RetryBudgetConfig;
use msakit_resilience::{
    BulkheadConfig, CircuitBreaker, CircuitBreakerConfig, Policy, PolicyConfig, RateLimiterConfig,
    RetryConfig, TimeoutConfig,
};

/// The protected call: as cheap as a call can be, so only the wrapper's cost is measured. With
/// `FAILING` set, one call in 16 fails (too few to trip any of the breakers).
#[inline(never)]
fn work(x: u64) -> Result<u64, ()> {
    if FAILING.load(Ordering::Relaxed) && x % 16 == 0 {
        return Err(());
    }
    Ok(black_box(x))
}

static FAILING: AtomicBool = AtomicBool::new(false);

/// Polls a future that completes without waiting.
fn now<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked call must not wait"),
    }
}

fn msakit_breaker() -> CircuitBreaker {
    CircuitBreaker::new("bench", CircuitBreakerConfig::default()).unwrap()
}

/// One call through the breaker's low-level API: admit, run, record.
#[inline(always)]
fn admit_and_record(breaker: &CircuitBreaker, x: u64) -> u64 {
    match breaker.try_acquire() {
        Ok(permit) => {
            let result = work(x);
            permit.record(if result.is_ok() {
                CallOutcome::Success
            } else {
                CallOutcome::Failure
            });
            result.unwrap_or(0)
        }
        Err(_) => 0,
    }
}

/// Runs `register` once per breaker, each given one call through that breaker; every breaker runs
/// the same `work` and keeps its result. All, the baseline included, are called through the same
/// `&dyn Fn` indirection, so it cancels out of the differences.
fn for_each_breaker(mut register: impl FnMut(&str, &(dyn Fn(u64) -> u64 + Sync))) {
    register("bare call (baseline)", &|x| work(x).unwrap_or(0));

    let breaker = msakit_breaker();
    register("msakit try_acquire+record", &move |x| {
        admit_and_record(&breaker, x)
    });

    let breaker = CircuitBreaker::new(
        "bench",
        CircuitBreakerConfig {
            slow_call_duration_threshold: Some(Duration::from_secs(60)),
            ..Default::default()
        },
    )
    .unwrap();
    register("msakit try_acquire+record, slow calls tracked", &move |x| {
        admit_and_record(&breaker, x)
    });

    let breaker = msakit_breaker();
    register("msakit call (async)", &move |x| {
        now(breaker.call(|| async move { work(x) })).unwrap_or(0)
    });

    let breaker = failsafe::Config::new().build();
    register("failsafe", &move |x| breaker.call(|| work(x)).unwrap_or(0));

    let breaker = recloser::Recloser::default();
    register("recloser", &move |x| breaker.call(|| work(x)).unwrap_or(0));
}

fn breaker_single_thread(c: &mut Criterion) {
    for failing in [false, true] {
        FAILING.store(failing, Ordering::Relaxed);
        let mut group = c.benchmark_group(group_name("breaker closed, 1 thread", failing));
        for_each_breaker(|name, call| {
            group.bench_function(name, |b| {
                let mut x = 0u64;
                b.iter(|| {
                    x = x.wrapping_add(1);
                    call(x)
                })
            });
        });
        group.finish();
    }
    FAILING.store(false, Ordering::Relaxed);
}

fn group_name(base: &str, failing: bool) -> String {
    if failing {
        format!("{base}, 1 in 16 calls failing")
    } else {
        format!("{base}, all calls succeeding")
    }
}

/// Two threads call the same breaker at once; the time is per call, per thread.
fn breaker_two_threads(c: &mut Criterion) {
    for failing in [false, true] {
        FAILING.store(failing, Ordering::Relaxed);
        let mut group =
            c.benchmark_group(group_name("breaker closed, 2 threads contending", failing));
        for_each_breaker(|name, call| {
            group.bench_function(name, |b| b.iter_custom(|iters| on_two_threads(iters, call)));
        });
        group.finish();
    }
    FAILING.store(false, Ordering::Relaxed);
}

/// Runs `call(i)` for i in 0..iters on two threads at once, each inside a Tokio runtime's
/// context; the slower thread's time.
fn on_two_threads(iters: u64, call: &(dyn Fn(u64) -> u64 + Sync)) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let _guard = runtime.enter();
                    barrier.wait();
                    let start = Instant::now();
                    let mut sum = 0u64;
                    for i in 0..iters {
                        sum = sum.wrapping_add(call(i));
                    }
                    black_box(sum);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn policy(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let config = PolicyConfig {
        retry: Some(RetryConfig {
            budget: Some(RetryBudgetConfig::default()),
            ..Default::default()
        }),
        circuit_breaker: Some(CircuitBreakerConfig::default()),
        rate_limiter: Some(RateLimiterConfig {
            limit_for_period: 1_000_000_000,
            limit_refresh_period: Duration::from_secs(1),
            max_wait: Duration::ZERO,
        }),
        timeout: Some(TimeoutConfig::default()),
        bulkhead: Some(BulkheadConfig::default()),
    };
    let full = Policy::from_config("bench", &config).unwrap();
    let mut group = c.benchmark_group("policy, 1 thread");
    group.bench_function("bare async call (baseline)", |b| {
        let mut x = 0u64;
        b.iter(|| {
            x = x.wrapping_add(1);
            now(async { work(x) }).unwrap_or(0)
        })
    });
    group.bench_function(
        "5 layers: retry, breaker, rate limiter, timeout, bulkhead",
        |b| {
            let mut x = 0u64;
            b.iter(|| {
                x = x.wrapping_add(1);
                now(full.call(|| async move { work(x) })).unwrap_or(0)
            })
        },
    );
    // Each part alone, so the whole's cost can be read against its parts.
    let parts: [(&str, PolicyConfig); 6] = [
        ("no parts", PolicyConfig::default()),
        (
            "retry alone",
            PolicyConfig {
                retry: config.retry.clone(),
                ..Default::default()
            },
        ),
        (
            "breaker alone",
            PolicyConfig {
                circuit_breaker: config.circuit_breaker.clone(),
                ..Default::default()
            },
        ),
        (
            "rate limiter alone",
            PolicyConfig {
                rate_limiter: config.rate_limiter.clone(),
                ..Default::default()
            },
        ),
        (
            "timeout alone",
            PolicyConfig {
                timeout: config.timeout.clone(),
                ..Default::default()
            },
        ),
        (
            "bulkhead alone",
            PolicyConfig {
                bulkhead: config.bulkhead.clone(),
                ..Default::default()
            },
        ),
    ];
    for (name, part) in parts {
        let policy = Policy::from_config("bench", &part).unwrap();
        group.bench_function(name, |b| {
            let mut x = 0u64;
            b.iter(|| {
                x = x.wrapping_add(1);
                now(policy.call(|| async move { work(x) })).unwrap_or(0)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("policy, 2 threads contending");
    group.bench_function("bare async call (baseline)", |b| {
        b.iter_custom(|iters| on_two_threads(iters, &|x| now(async { work(x) }).unwrap_or(0)))
    });
    group.bench_function(
        "5 layers: retry, breaker, rate limiter, timeout, bulkhead",
        |b| {
            b.iter_custom(|iters| {
                on_two_threads(iters, &|x| {
                    now(full.call(|| async move { work(x) })).unwrap_or(0)
                })
            })
        },
    );
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = breaker_single_thread, breaker_two_threads, policy
);
criterion_main!(benches);
