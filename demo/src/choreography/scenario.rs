//! `msakit-demo --choreography [--kafka HOST:PORT [--kafka-dir DIR]]`: the choreographed saga
//! under steady traffic through its fault phases — SIGKILL the relay's process right after a
//! commit, SIGKILL a consumer mid-handler, stop the broker for 10 s (Kafka with `--kafka-dir`) —
//! then every order is checked across the three databases.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use msakit::{Client, ServiceClientOptions};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use super::ledger;
use crate::cluster::Cluster;
use crate::report::Report;
use crate::scenario::put_config;

/// Order's database file in the run directory.
pub(crate) const ORDER_DB: &str = "chor-order.db";
/// Payment's.
pub(crate) const PAYMENT_DB: &str = "chor-payment.db";
/// Delivery's.
pub(crate) const DELIVERY_DB: &str = "chor-delivery.db";

/// The lease asked of the registry by the services.
const LEASE: &str = "3s";

/// How the run goes.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Short phases (the tests use this).
    pub(crate) quick: bool,
    /// Kafka's brokers; the direct transport when `None`.
    pub(crate) kafka: Option<String>,
    /// The broker's directory for `events/kafka/stop` and `start`: enables the broker phase.
    pub(crate) kafka_dir: Option<PathBuf>,
    /// Instead of the phases: 20 random SIGKILLs while this many events flow.
    pub(crate) crash_test: Option<u64>,
}

/// Runs the scenario; whether every expectation held.
pub(crate) async fn run(options: Options) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new()
        .prefix("msakit-choreography-")
        .tempdir()?;
    let mut cluster = Cluster::new(dir.path())?;
    let held = tokio::select! {
        result = play(&options, &mut cluster) => result,
        _ = msakit_server_kit::shutdown_signal() => {
            eprintln!("interrupted: stopping every process");
            Ok(false)
        }
    };
    cluster.stop().await;
    if held.as_ref().map_or(true, |held| !held) {
        let kept = dir.keep();
        println!("logs and databases kept in {}", kept.display());
    }
    held
}

/// Orders the traffic placed and the answers it got.
#[derive(Default)]
struct Placed {
    accepted: Vec<String>,
    failed: usize,
}

async fn play(options: &Options, cluster: &mut Cluster) -> anyhow::Result<bool> {
    let dir = cluster.dir().to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let transport = options
        .kafka
        .as_ref()
        .map_or("the direct transport".to_owned(), |k| {
            format!("Kafka at {k}")
        });
    say(&format!(
        "choreographed saga on {transport}: starting the registry and the config server"
    ));
    let registry_port = cluster.start("registry", &["registry".into()]).await?;
    let data = dir.join("config-data").display().to_string();
    let config_port = cluster
        .start(
            "config-server",
            &["config-server".into(), "--data-dir".into(), data],
        )
        .await?;
    let registry = format!("http://127.0.0.1:{registry_port}");
    let config = format!("http://127.0.0.1:{config_port}");
    for application in ["order", "payment", "delivery"] {
        put_config(&http, &config, application, &payment_doc(0)).await?;
    }
    // Topics of this run only: a broker keeps what earlier runs wrote.
    let prefix = format!("demo-{:08x}-", fastrand::u32(..));
    let service_args = |kind: &str, name: &str, db: &str| -> Vec<String> {
        let mut args: Vec<String> = [
            "service",
            kind,
            "--choreographed",
            "--instance",
            name,
            "--registry",
            &registry,
            "--config",
            &config,
            "--db",
            &dir.join(db).display().to_string(),
            "--lease",
            LEASE,
            "--topic-prefix",
            &prefix,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(kafka) = &options.kafka {
            args.extend(["--kafka".to_owned(), kafka.clone()]);
        }
        args
    };
    let instances = [
        ("delivery", "delivery-1", DELIVERY_DB),
        ("payment", "payment-1", PAYMENT_DB),
        ("payment", "payment-2", PAYMENT_DB),
        ("order", "order-1", ORDER_DB),
        ("order", "order-2", ORDER_DB),
    ];
    for (kind, name, db) in instances {
        cluster.start(name, &service_args(kind, name, db)).await?;
    }
    say("order ×2, payment ×2, delivery ×1 up, each its own process; orders flowing");

    let client = Client::builder().registry_url(&registry).build()?;
    let calls = client.service_client(
        ServiceClientOptions::default()
            .attempt_timeout(Duration::from_secs(2))
            .deadline(Duration::from_secs(5)),
    )?;
    let placed = Arc::new(Mutex::new(Placed::default()));
    let stop_traffic = CancellationToken::new();
    let (senders, pause) = match options.crash_test {
        Some(_) => (8, Duration::ZERO),
        None => (1, Duration::from_millis(40)),
    };
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let traffic: Vec<_> = (0..senders)
        .map(|_| {
            tokio::spawn(traffic(
                calls.clone(),
                Arc::clone(&next),
                pause,
                Arc::clone(&placed),
                stop_traffic.clone(),
            ))
        })
        .collect();
    let mut report = Report::default();
    let phase = if options.quick {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(12)
    };

    if let Some(target) = options.crash_test {
        crash_test(target, cluster, &service_args, &dir, &mut report).await?;
    } else {
        // 1: steady.
        say("phase 1: steady traffic");
        tokio::time::sleep(phase).await;
        let states = ledger::states(&dir).await?;
        let settled = states.values().filter(|(_, s, _)| is_final(s)).count();
        report.expect(
            "1 steady",
            "orders settle through three services' events while traffic flows",
            format!("{settled} of {} orders settled", states.len()),
            settled > 0,
        );

        // 2: SIGKILL the relay's process right after commits: a burst of orders at the lease
        // holder, killed once 20 have been answered — some of its committed events not yet relayed.
        say(
            "phase 2: a burst of orders at the order instance holding the relay lease; SIGKILL once 20 are answered",
        );
        let holder = relay_holder(&dir.join(ORDER_DB)).await?;
        let port = cluster
            .port(&holder)
            .context("the lease holder is running")?;
        let mut burst: futures_util::stream::FuturesUnordered<_> = (0..60)
            .map(|i| {
                let id = format!("burst-{i}");
                let request = http
                    .post(format!("http://127.0.0.1:{port}/orders"))
                    .header("idempotency-key", &id)
                    .json(&serde_json::json!({"amount": fastrand::i64(1..=100)}))
                    .send();
                async move { (id, request.await.is_ok_and(|r| r.status().is_success())) }
            })
            .collect();
        let mut answered = Vec::new();
        while let Some((id, ok)) = futures_util::StreamExt::next(&mut burst).await {
            if ok {
                answered.push(id);
            }
            if answered.len() >= 20 {
                break;
            }
        }
        cluster.kill(&holder).await?;
        drop(burst);
        let unrelayed = outbox_len(&dir.join(ORDER_DB)).await?;
        say(&format!(
            "{holder} SIGKILLed after answering {} orders; {unrelayed} committed events not yet relayed",
            answered.len()
        ));
        placed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accepted
            .extend(answered.iter().cloned());
        cluster
            .start(&holder, &service_args("order", &holder, ORDER_DB))
            .await?;
        let mut unsettled = answered.len();
        let settle_by = Instant::now() + Duration::from_secs(30);
        while unsettled > 0 && Instant::now() < settle_by {
            let states = ledger::states(&dir).await?;
            unsettled = answered
                .iter()
                .filter(|id| !states.get(*id).is_some_and(|(_, state, _)| is_final(state)))
                .count();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        report.expect(
            "2 relay killed",
            "orders committed just before their relay was SIGKILLed all settle (no event lost)",
            format!(
                "{} answered, {unrelayed} events unrelayed at the kill; {} settled within 30 s",
                answered.len(),
                answered.len() - unsettled
            ),
            answered.len() >= 20 && unsettled == 0,
        );

        // 3: SIGKILL a consumer mid-handler.
        say(
            "phase 3: payment's handlers slowed to 200 ms; SIGKILL a payment instance while one runs",
        );
        put_config(&http, &config, "payment", &payment_doc(200)).await?;
        // Whichever instance has a handler running (on Kafka, the partitions with events may all
        // be the other member's).
        let (victim, in_flight) = wait_in_flight(
            &http,
            cluster,
            &["payment-1", "payment-2"],
            Duration::from_secs(30),
        )
        .await;
        cluster.kill(victim).await?;
        say(&format!(
            "{victim} SIGKILLed with {in_flight} handler(s) in flight"
        ));
        put_config(&http, &config, "payment", &payment_doc(0)).await?;
        cluster
            .start(victim, &service_args("payment", victim, PAYMENT_DB))
            .await?;
        report.expect(
            "3 consumer killed",
            "a payment instance is SIGKILLed mid-handler (its transaction rolls back, the event is redelivered)",
            format!("{in_flight} handler(s) in flight at the kill"),
            in_flight > 0,
        );
        tokio::time::sleep(phase / 2).await;

        // 4: the broker stopped for 10 s (Kafka, when the scenario may control it).
        if let (Some(kafka), Some(kafka_dir)) = (&options.kafka, &options.kafka_dir) {
            say("phase 4: the Kafka broker stopped for 10 s");
            let before = placed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .accepted
                .len();
            broker("stop", kafka_dir, None).await?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            let during = placed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .accepted
                .len()
                - before;
            let port = kafka.rsplit(':').next().context("--kafka is HOST:PORT")?;
            broker("start", kafka_dir, Some(port)).await?;
            say("the broker is back");
            report.expect(
                "4 broker down",
                "orders are still accepted while the broker is down (they wait in the outbox)",
                format!("{during} orders accepted in the 10 s"),
                during > 0,
            );
            tokio::time::sleep(phase / 2).await;
        }
    }

    // 5: drain and check every order.
    say("traffic stopped; waiting for every order to settle");
    stop_traffic.cancel();
    for sender in traffic {
        sender.await?;
    }
    let settle_by = Instant::now() + Duration::from_secs(if options.quick { 60 } else { 120 });
    while Instant::now() < settle_by {
        let states = ledger::states(&dir).await?;
        if states.values().all(|(_, s, _)| is_final(s)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let placed = std::mem::take(&mut *placed.lock().unwrap_or_else(|e| e.into_inner()));
    let findings = ledger::check(&dir, &placed.accepted).await?;
    expect_invariants(&mut report, &findings, &placed);
    Ok(report.print())
}

fn expect_invariants(report: &mut Report, findings: &ledger::Findings, placed: &Placed) {
    let sample = |list: &[String]| list.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    report.expect(
        "invariants",
        "every accepted order is in order's database",
        format!(
            "{} accepted ({} requests failed), {} missing {}",
            placed.accepted.len(),
            placed.failed,
            findings.accepted_missing.len(),
            sample(&findings.accepted_missing)
        ),
        findings.accepted_missing.is_empty(),
    );
    report.expect(
        "invariants",
        "every order ends COMPLETED or CANCELLED",
        format!(
            "{} orders, {} unsettled {}",
            findings.orders,
            findings.unsettled.len(),
            sample(&findings.unsettled)
        ),
        findings.unsettled.is_empty() && findings.orders > 0,
    );
    report.expect(
        "invariants",
        "no event lost: each order has exactly the effects its amount calls for",
        format!("{} wrong {}", findings.wrong.len(), sample(&findings.wrong)),
        findings.wrong.is_empty(),
    );
    report.expect(
        "invariants",
        "no effect applied twice (no charge, refund, decline or delivery twice)",
        format!(
            "{} orders with a double effect {}",
            findings.twice.len(),
            sample(&findings.twice)
        ),
        findings.twice.is_empty(),
    );
    report.expect(
        "invariants",
        "each order's events applied in the order published",
        format!(
            "{} out of order {}",
            findings.out_of_order.len(),
            sample(&findings.out_of_order)
        ),
        findings.out_of_order.is_empty(),
    );
    report.expect(
        "invariants",
        "no dead letters, nothing left in an outbox",
        format!(
            "{} dead letters, {} events in outboxes",
            findings.dead_letters, findings.in_outboxes
        ),
        findings.dead_letters == 0 && findings.in_outboxes == 0,
    );
    let percentile = |p: f64| {
        let settle = &findings.settle_ms;
        settle
            .get(((settle.len() as f64 * p) as usize).min(settle.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    report.expect(
        "figures",
        "order accepted → settled (three hops of events), faults included",
        format!(
            "p50 {} ms, p99 {} ms, max {} ms",
            percentile(0.5),
            percentile(0.99),
            percentile(1.0)
        ),
        true,
    );
}

/// Places orders through the SDK (balanced, retried: the Idempotency-Key makes a retry safe),
/// one every `pause` (or back to back), until `stop`.
async fn traffic(
    calls: msakit::ServiceClient,
    next: Arc<std::sync::atomic::AtomicU64>,
    pause: Duration,
    placed: Arc<Mutex<Placed>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(pause.max(Duration::from_micros(1)));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick(), if !pause.is_zero() => {}
            () = std::future::ready(()), if pause.is_zero() => {}
        }
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let id = format!("o-{n}");
        let amount = fastrand::i64(1..=100);
        let answer = calls
            .post("order", "/orders")
            .header("idempotency-key", &id)
            .json(&serde_json::json!({"amount": amount}))
            .retryable()
            .send()
            .await;
        let accepted = matches!(&answer, Ok(response) if response.status().is_success());
        {
            let mut placed = placed.lock().unwrap_or_else(|e| e.into_inner());
            if accepted {
                placed.accepted.push(id);
            } else {
                placed.failed += 1;
            }
        }
        // A refusal can come back at once (no instance up, breaker open): never spin on it.
        if !accepted {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// 20 SIGKILLs of a random service instance (relays and consumers alike: every instance is
/// both), evenly spread while `target` events are published, each restarted at once.
async fn crash_test(
    target: u64,
    cluster: &mut Cluster,
    service_args: &dyn Fn(&str, &str, &str) -> Vec<String>,
    dir: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    const KILLS: u64 = 20;
    let instances = [
        ("order", "order-1", ORDER_DB),
        ("order", "order-2", ORDER_DB),
        ("payment", "payment-1", PAYMENT_DB),
        ("payment", "payment-2", PAYMENT_DB),
        ("delivery", "delivery-1", DELIVERY_DB),
    ];
    say(&format!(
        "crash test: {KILLS} random SIGKILLs while {target} events flow"
    ));
    let started = Instant::now();
    let mut killed = Vec::new();
    let mut published = 0;
    while published < target {
        published = ledger::published(dir).await?;
        if (killed.len() as u64) < KILLS
            && published >= (killed.len() as u64 + 1) * target / (KILLS + 1)
        {
            let (kind, name, db) = instances[fastrand::usize(..instances.len())];
            cluster.kill(name).await?;
            cluster.start(name, &service_args(kind, name, db)).await?;
            killed.push(name);
            say(&format!(
                "SIGKILL {} of {KILLS}: {name} (restarted), {published} events so far",
                killed.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed().as_secs_f64();
    report.expect(
        "crash test",
        format!("{KILLS} random SIGKILLs of relays and consumers while {target} events flow"),
        format!(
            "{} SIGKILLs ({}), {published} events in {took:.0} s ({:.0}/s)",
            killed.len(),
            killed.join(", "),
            published as f64 / took
        ),
        killed.len() as u64 == KILLS && published >= target,
    );
    Ok(())
}

fn is_final(state: &str) -> bool {
    state == "COMPLETED" || state == "CANCELLED"
}

/// The instance holding order's relay lease.
async fn relay_holder(db: &Path) -> anyhow::Result<String> {
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let pool = msakit_events::connect(&url).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let holder = sqlx::query("SELECT holder FROM msakit_relay_lease WHERE name = 'relay'")
            .fetch_optional(&pool)
            .await?;
        if let Some(row) = holder {
            pool.close().await;
            return Ok(row.get(0));
        }
        anyhow::ensure!(Instant::now() < deadline, "no relay holds the lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Events committed in `db` and not yet relayed.
async fn outbox_len(db: &Path) -> anyhow::Result<i64> {
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let pool = msakit_events::connect(&url).await?;
    let left = sqlx::query_scalar("SELECT COUNT(*) FROM msakit_outbox")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(left)
}

/// Waits until one of `names` has `demo_handlers_in_flight` above zero: that one and the count
/// (the first name and 0 on timeout).
async fn wait_in_flight<'n>(
    http: &reqwest::Client,
    cluster: &Cluster,
    names: &[&'n str],
    within: Duration,
) -> (&'n str, u64) {
    let started = Instant::now();
    while started.elapsed() < within {
        for name in names {
            let Some(port) = cluster.port(name) else {
                continue;
            };
            if let Ok(response) = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                && let Ok(text) = response.text().await
            {
                let in_flight = text
                    .lines()
                    .find_map(|line| line.strip_prefix("demo_handlers_in_flight "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                if in_flight >= 1.0 {
                    return (name, in_flight as u64);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (names[0], 0)
}

/// Runs `events/kafka/<action> DIR [PORT]`.
async fn broker(action: &str, dir: &Path, port: Option<&str>) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events/kafka")
        .join(action);
    let mut command = tokio::process::Command::new("bash");
    command.arg(&script).arg(dir);
    if let Some(port) = port {
        command.arg(port);
    }
    let status = command
        .status()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        status.success(),
        "{} {} failed: {status}",
        script.display(),
        dir.display()
    );
    Ok(())
}

fn payment_doc(handler_delay_ms: u64) -> String {
    format!(
        "faults:\n  error_rate: 0.0\n  latency_ms: 0\n  hang: false\nhandler_delay_ms: {handler_delay_ms}\n"
    )
}

fn say(line: &str) {
    println!("» {line}");
}
