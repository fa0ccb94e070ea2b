//! Retry end to end: the budget stops a retry storm, in paused time and against a real server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use msakit_resilience::retry::{Backoff, RetryBudgetConfig, RetryEventKind};
use msakit_resilience::{Error, Retry, RetryConfig};

use crate::support::{Dependency, Health};

fn storm_config(ratio: f32, floor: u32) -> RetryConfig {
    RetryConfig {
        max_attempts: 10,
        backoff: Backoff::Constant {
            delay: Duration::from_millis(1),
        },
        budget: Some(RetryBudgetConfig {
            ttl: Duration::from_secs(10),
            retry_ratio: ratio,
            min_retries_per_second: floor,
        }),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_a_retry_storm() {
    let retry = Retry::new("storm", storm_config(0.2, 1)).unwrap();
    let attempts = Arc::new(AtomicU64::new(0));
    let requests = 1000u64;
    let mut tasks = Vec::new();
    for _ in 0..requests {
        let (retry, attempts) = (retry.clone(), Arc::clone(&attempts));
        tasks.push(tokio::spawn(async move {
            let _: Result<(), Error<()>> = retry
                .call(|| {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    async { Err(()) }
                })
                .await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let retries = attempts.load(Ordering::SeqCst) - requests;
    // ratio × requests + floor × ttl = 200 + 10.
    assert!(retries <= 210, "{retries} retries");
    assert!(
        retries >= 200,
        "the budget should be used, not refused: {retries}"
    );
    let metrics = retry.metrics();
    assert_eq!(metrics.retries, retries);
    assert_eq!(
        metrics.failed_with_retry + metrics.failed_without_retry,
        requests
    );
    assert!(metrics.denied_by_budget > 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_budget_the_storm_multiplies_load() {
    let retry = Retry::new(
        "storm",
        RetryConfig {
            budget: None,
            ..storm_config(0.2, 1)
        },
    )
    .unwrap();
    let attempts = AtomicU64::new(0);
    for _ in 0..100 {
        let _: Result<(), Error<()>> = retry
            .call(|| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err(()) }
            })
            .await;
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 1000);
}

#[tokio::test(start_paused = true)]
async fn events_report_each_retry_and_the_budget() {
    let retry = Retry::new("events", storm_config(0.0, 0)).unwrap();
    let mut events = retry.events();
    let _: Result<(), Error<()>> = retry.call(|| async { Err(()) }).await;
    let kinds: Vec<_> = std::iter::from_fn(|| events.try_recv())
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            RetryEventKind::BudgetExhausted { attempt: 1 },
            RetryEventKind::Error { attempts: 1 }
        ]
    );
}

#[tokio::test]
async fn a_real_dependency_failing_100_percent_sees_bounded_load() {
    let dependency = Dependency::start().await;
    dependency.set(Health::Failing);
    let client = reqwest::Client::new();
    let retry = Retry::new("http", storm_config(0.1, 1)).unwrap().retry_on(
        |r: Result<&reqwest::Response, &reqwest::Error>| match r {
            Ok(response) if response.status().is_server_error() => {
                msakit_resilience::retry::RetryDecision::Retry
            }
            Ok(_) => msakit_resilience::retry::RetryDecision::Done,
            Err(_) => msakit_resilience::retry::RetryDecision::Retry,
        },
    );
    let requests = 200;
    for _ in 0..requests {
        let response = retry
            .call(|| client.get(&dependency.url).send())
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
    }
    // 200 requests + at most 10% of them + 1/s × 10 s of floor.
    let seen = dependency.requests();
    assert!(seen <= 200 + 20 + 10, "dependency saw {seen} requests");
    assert!(seen >= 200 + 20, "dependency saw {seen} requests");
}
