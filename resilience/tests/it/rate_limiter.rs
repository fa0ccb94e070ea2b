//! The rate limit holds under real multi-threaded concurrency, shared by clones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use msakit_resilience::{RateLimiter, RateLimiterConfig};

#[test]
fn clones_share_one_limit_under_4_threads() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let limiter = RateLimiter::new(
        "r",
        RateLimiterConfig {
            limit_for_period: 100,
            limit_refresh_period: Duration::from_secs(1),
            max_wait: Duration::ZERO,
        },
    )
    .unwrap();
    let permitted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (limiter, permitted) = (limiter.clone(), Arc::clone(&permitted));
                tokio::spawn(async move {
                    let until = Instant::now() + Duration::from_millis(300);
                    while Instant::now() < until {
                        if limiter.acquire().await.is_ok() {
                            permitted.fetch_add(1, Ordering::SeqCst);
                        }
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let permitted = permitted.load(Ordering::SeqCst);
    // A burst of 100, then 100 per second; one more for the rounding of the last interval.
    let bound = 100 + (elapsed * 100.0).ceil() as u64 + 1;
    assert!(
        permitted <= bound,
        "{permitted} permits in {elapsed:.3}s (bound {bound})"
    );
    assert!(permitted >= 100, "the burst must be usable: {permitted}");
    let m = limiter.metrics();
    assert_eq!(m.permitted_calls, permitted);
    assert!(m.rejected_calls > 0);
}
