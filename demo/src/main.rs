//! `cargo run --release -p msakit-demo`: a scripted fault scenario against a real HTTP
//! dependency, with a client protected by a msakit resilience policy.
//!
//! Today the demo shows the resilience layer: a "payment" service on a loopback port goes through
//! healthy → failing → slow → healthy phases while an "order" client calls it through
//! retry + circuit breaker + timeout + bulkhead. The timeline shows the breaker opening within
//! milliseconds of the fault, rejecting calls without touching the sick service, probing, and
//! closing again once it recovers. The full gateway / order / payment / delivery system with a
//! registry and a config server replaces this as those parts land.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use msakit_resilience::circuit_breaker::CircuitBreakerEventKind;
use msakit_resilience::{Error, Policy, PolicyConfig};

/// The client's policy, as a service would keep it in its YAML config.
const POLICY: &str = "
retry:
  max_attempts: 3
  backoff: { type: full_jitter, initial: 20ms, multiplier: 2 }
circuit_breaker:
  sliding_window_size: 20
  minimum_number_of_calls: 10
  failure_rate_threshold: 50
  wait_duration_in_open_state: 1s
  permitted_number_of_calls_in_half_open_state: 3
  automatic_transition_from_open_to_half_open_enabled: true
timeout:
  timeout: 150ms
bulkhead:
  max_concurrent_calls: 16
";

/// The scripted health of the payment service.
const SCENARIO: [(&str, Health, Duration); 4] = [
    ("healthy", Health::Healthy, Duration::from_secs(2)),
    (
        "failing (HTTP 503)",
        Health::Failing,
        Duration::from_secs(3),
    ),
    ("slow (2 s answers)", Health::Slow, Duration::from_secs(3)),
    ("recovered", Health::Healthy, Duration::from_secs(3)),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Health {
    Healthy,
    Failing,
    Slow,
}

#[derive(Default)]
struct Payment {
    health: AtomicU8,
    requests: AtomicU64,
}

async fn pay(State(payment): State<Arc<Payment>>) -> StatusCode {
    payment.requests.fetch_add(1, Ordering::Relaxed);
    match payment.health.load(Ordering::Relaxed) {
        0 => StatusCode::OK,
        1 => StatusCode::SERVICE_UNAVAILABLE,
        _ => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StatusCode::OK
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    failed: u64,
    timed_out: u64,
    rejected: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let payment = Arc::new(Payment::default());
    let app = axum::Router::new()
        .route("/pay", axum::routing::post(pay))
        .with_state(Arc::clone(&payment));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/pay", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    tracing::info!(%url, "payment service listening");

    let config: PolicyConfig = serde_yaml_ng::from_str(POLICY).context("policy YAML")?;
    let policy = Policy::from_config("order→payment", &config)?;
    let breaker = policy
        .circuit_breaker()
        .context("the policy has a breaker")?
        .clone();
    let started = Instant::now();
    let mut events = breaker.events();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let CircuitBreakerEventKind::StateTransition { from, to } = event.kind {
                println!(
                    "  {:>6} ms  breaker {from} → {to}",
                    started.elapsed().as_millis()
                );
            }
        }
    });

    let client = reqwest::Client::new();
    println!("msakit demo: an order client calls a payment service through a resilience policy\n");
    for (name, health, duration) in SCENARIO {
        payment.health.store(health as u8, Ordering::Relaxed);
        println!(
            "{:>8} ms  payment service is {name}",
            started.elapsed().as_millis()
        );
        let before = payment.requests.load(Ordering::Relaxed);
        let phase_end = Instant::now() + duration;
        let mut tally = Tally::default();
        let mut latency = Duration::ZERO;
        while Instant::now() < phase_end {
            let t = Instant::now();
            let result = policy
                .call(|| async {
                    let response = client.post(&url).send().await?.error_for_status()?;
                    Ok::<_, reqwest::Error>(response.status())
                })
                .await;
            latency += t.elapsed();
            match result {
                Ok(_) => tally.ok += 1,
                Err(Error::CallNotPermitted(_)) => tally.rejected += 1,
                Err(Error::Timeout(_)) => tally.timed_out += 1,
                Err(_) => tally.failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let calls = tally.ok + tally.failed + tally.timed_out + tally.rejected;
        println!(
            "            {calls} calls: {} ok, {} failed, {} timed out, {} rejected at once; \
             mean {:.1} ms; payment saw {} requests",
            tally.ok,
            tally.failed,
            tally.timed_out,
            tally.rejected,
            latency.as_secs_f64() * 1000.0 / calls.max(1) as f64,
            payment.requests.load(Ordering::Relaxed) - before,
        );
    }
    let retry = policy.retry().context("the policy retries")?.metrics();
    println!(
        "\nretries: {} made, {} refused by the retry budget; breaker ends {}",
        retry.retries,
        retry.denied_by_budget,
        breaker.state()
    );
    Ok(())
}
