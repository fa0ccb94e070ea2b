//! The bulkhead's limit holds under real multi-threaded concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use msakit_resilience::{Bulkhead, BulkheadConfig, Error};

#[test]
fn the_limit_holds_under_64_tasks_on_4_threads() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for max_wait in [Duration::ZERO, Duration::from_secs(10)] {
            let bulkhead = Bulkhead::new(
                "b",
                BulkheadConfig {
                    max_concurrent_calls: 5,
                    max_wait,
                },
            )
            .unwrap();
            let in_flight = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let barrier = Arc::new(tokio::sync::Barrier::new(64));
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (bulkhead, barrier) = (bulkhead.clone(), Arc::clone(&barrier));
                    let (in_flight, peak) = (Arc::clone(&in_flight), Arc::clone(&peak));
                    tokio::spawn(async move {
                        barrier.wait().await;
                        bulkhead
                            .call(|| async {
                                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                                peak.fetch_max(now, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(2)).await;
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                                Ok::<(), ()>(())
                            })
                            .await
                    })
                })
                .collect();
            let mut rejected = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Ok(()) => {}
                    Err(Error::BulkheadFull(full)) => {
                        assert_eq!(full.max_concurrent_calls, 5);
                        rejected += 1;
                    }
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            assert!(peak.load(Ordering::SeqCst) <= 5);
            let m = bulkhead.metrics();
            assert_eq!(m.permitted_calls + m.rejected_calls, 64);
            assert_eq!(m.rejected_calls, rejected);
            assert_eq!(m.available_concurrent_calls, 5);
            if max_wait.is_zero() {
                assert!(rejected > 0, "64 at once into 5 slots must reject some");
            } else {
                assert_eq!(rejected, 0, "a long wait lets everyone in, 5 at a time");
            }
        }
    });
}
