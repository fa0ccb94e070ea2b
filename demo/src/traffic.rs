//! Steady traffic through the gateway: orders at a fixed rate, each with its own idempotency
//! key, every answer recorded (status, latency, phase) for the live view and the report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The API key the demo's clients use (the gateway's config lists it).
pub(crate) const API_KEY: &str = "demo-key-one-0001";

/// One answered (or unanswered) order request.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// The phase it was sent in.
    pub(crate) phase: usize,
    /// When it was sent.
    pub(crate) at: Instant,
    /// The HTTP status; 0 when no answer came in 5 s or the connection failed.
    pub(crate) status: u16,
    /// The order's state, when the answer carried one.
    pub(crate) state: String,
    pub(crate) latency: Duration,
    pub(crate) order_id: String,
}

/// What the driver has recorded, shared with the view and the scenario.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) samples: Mutex<Vec<Sample>>,
    pub(crate) phase: std::sync::atomic::AtomicUsize,
}

impl Recorder {
    /// Samples of `phase`.
    pub(crate) fn phase(&self, phase: usize) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .iter()
            .filter(|s| s.phase == phase)
            .cloned()
            .collect()
    }

    /// Samples sent since `since`.
    pub(crate) fn since(&self, since: Instant) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.iter().filter(|s| s.at >= since).cloned().collect()
    }
}

/// Sends `rate` orders per second to `gateway` until `stop`, at most 64 in flight.
pub(crate) async fn drive(
    gateway: String,
    rate: u32,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a plain client builds");
    let in_flight = Arc::new(Semaphore::new(64));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut next = 0u64;
    let run = format!("{:08x}", fastrand::u32(..));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            continue;
        };
        next += 1;
        let order_id = format!("o-{run}-{next}");
        let (http, url, recorder) = (
            http.clone(),
            format!("{gateway}/api/orders"),
            Arc::clone(&recorder),
        );
        tokio::spawn(async move {
            let phase = recorder.phase.load(std::sync::atomic::Ordering::Relaxed);
            let at = Instant::now();
            let answer = http
                .post(url)
                .header("x-api-key", API_KEY)
                .header("idempotency-key", &order_id)
                .json(&serde_json::json!({"amount": fastrand::i64(100..10_000)}))
                .send()
                .await;
            let (status, state) = match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    (
                        status,
                        body["state"].as_str().unwrap_or_default().to_owned(),
                    )
                }
                Err(_) => (0, String::new()),
            };
            let sample = Sample {
                phase,
                at,
                status,
                state,
                latency: at.elapsed(),
                order_id,
            };
            recorder
                .samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sample);
            drop(permit);
        });
    }
    // Let the requests in flight finish.
    let _ = in_flight.acquire_many(64).await;
}

/// The `p` quantile of the samples' latencies.
pub(crate) fn quantile(samples: &[Sample], p: f64) -> Duration {
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    latencies
        .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// The share of samples answered 2xx.
pub(crate) fn ok_share(samples: &[Sample]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples
        .iter()
        .filter(|s| (200..300).contains(&s.status))
        .count() as f64
        / samples.len() as f64
}
