//! A closed-loop load generator: N workers each send the next request as soon as the last one
//! answers, until a count or a time runs out — whichever first, so every loop ends by itself.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measured {
    /// Requests answered successfully.
    pub(crate) ops: u64,
    /// Requests that failed.
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    /// Every successful request's latency, sorted.
    pub(crate) latencies: Vec<Duration>,
    /// The server's CPU time during the run.
    pub(crate) cpu: Duration,
}

impl Measured {
    pub(crate) fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn quantile(&self, p: f64) -> Duration {
        quantile(&self.latencies, p)
    }
}

/// The `p` quantile of sorted `samples`.
pub(crate) fn quantile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

/// Runs `op(worker, i)` for i = 0, 1, … from `concurrency` workers until `max_ops` were started
/// or `duration` passed. `op` answers whether the request succeeded.
pub(crate) async fn closed_loop<F, Fut>(
    concurrency: usize,
    duration: Duration,
    max_ops: u64,
    op: F,
) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (op, next) = (Arc::clone(&op), Arc::clone(&next));
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= max_ops || started.elapsed() >= duration {
                        break;
                    }
                    let t = Instant::now();
                    if op(worker, i).await {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    gather(workers, started).await
}

/// Runs `op(worker, i)` at `rate` per second in all, spread over `concurrency` workers, for
/// `duration`; a worker that falls behind catches up as fast as answers allow.
pub(crate) async fn paced<F, Fut>(
    concurrency: usize,
    rate: f64,
    duration: Duration,
    op: F,
) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let every = Duration::from_secs_f64(concurrency as f64 / rate.max(1e-9));
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (op, next) = (Arc::clone(&op), Arc::clone(&next));
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + every.mul_f64(worker as f64 / concurrency as f64),
                    every,
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                loop {
                    tick.tick().await;
                    if started.elapsed() >= duration {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    if op(worker, i).await {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    gather(workers, started).await
}

/// What the workers measured, together: each returns its latencies and its error count.
async fn gather(
    workers: Vec<tokio::task::JoinHandle<(Vec<Duration>, u64)>>,
    started: Instant,
) -> Measured {
    let mut measured = Measured::default();
    for worker in workers {
        if let Ok((latencies, errors)) = worker.await {
            measured.latencies.extend(latencies);
            measured.errors += errors;
        }
    }
    measured.elapsed = started.elapsed();
    measured.ops = measured.latencies.len() as u64;
    measured.latencies.sort();
    measured
}
