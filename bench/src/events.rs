//! `msakit-bench events --kafka HOST:PORT`: events end to end — committed in a transaction, then
//! applied exactly once by a handler in another database — on Kafka and on the direct transport,
//! against a bare rdkafka producer and consumer (no outbox, no inbox, no database) on the same
//! broker, in the same run: the ceiling. Throughput flat out, then commit → handled latency at
//! half of the measured maximum.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use msakit_events::{
    AnyConnection, AnyPool, Event, EventType, Events, Handler, HandlerError, Transport,
};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

/// `msakit-bench events`.
#[derive(Debug, clap::Args)]
pub(crate) struct EventsArgs {
    /// The Kafka broker (`events/kafka/start DIR PORT` runs one).
    #[arg(long)]
    kafka: String,
    /// Events per throughput run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Seconds of each latency run.
    #[arg(long, default_value_t = 5)]
    latency_secs: u64,
    /// Publishing tasks (each commits its own transactions).
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Where to write the table (a section between markers); `-` for stdout only.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

/// The event: when it was committed, microseconds since the epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ping {
    n: u64,
    sent_us: i64,
    padding: String,
}

impl EventType for Ping {
    const TYPE: &'static str = "Ping";
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// What the consumer saw: latencies (µs) and the first and last time it applied one.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<i64>,
    ids: HashSet<String>,
    duplicates: usize,
    last: Option<Instant>,
}

#[derive(Clone)]
struct Apply(Arc<Mutex<Seen>>);

impl Handler<Ping> for Apply {
    async fn handle(&self, db: &mut AnyConnection, event: Event<Ping>) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (n) VALUES ($1)")
            .bind(event.payload.n as i64)
            .execute(&mut *db)
            .await?;
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.latencies_us.push(now_us() - event.payload.sent_us);
        if !seen.ids.insert(event.id.clone()) {
            seen.duplicates += 1;
        }
        seen.last = Some(Instant::now());
        Ok(())
    }
}

/// One measured line.
struct Measured {
    name: &'static str,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    rate: f64,
}

pub(crate) async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let dir = crate::scratch()?;
    let padding = "x".repeat(200);
    let mut lines = Vec::new();

    let bare = bare_kafka(&args, &padding).await?;
    lines.push(bare);
    for transport in ["kafka", "direct"] {
        lines.push(msakit(&args, dir.path(), transport, &padding).await?);
    }
    let commits = sqlite_commits(&args, dir.path()).await?;
    let ceiling = lines[0].per_second;
    let mut table = String::from(
        "| path | events/s flat out | × bare | commit → handled at half load: p50 | p99 | at |\n|---|---|---|---|---|---|\n",
    );
    for line in &lines {
        table.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.1} ms | {:.1} ms | {:.0}/s |\n",
            line.name,
            line.per_second,
            line.per_second / ceiling,
            line.p50_ms,
            line.p99_ms,
            line.rate
        ));
    }
    table.push_str(&format!(
        "| the same publishing tasks committing a row per transaction, no event (SQLite's own ceiling here) | {commits:.0} | {:.2} | | | |\n",
        commits / ceiling
    ));
    table.push_str(&format!(
        "\n{} events per throughput run, {} publishing tasks, latency runs {} s; SQLite (WAL, \
         synchronous=FULL) on the repository's disk; Kafka 4.1 single KRaft node on loopback.\n",
        args.events, args.publishers, args.latency_secs
    ));
    println!("{table}");
    if args.out.as_os_str() != "-" {
        crate::compare::replace_section(&args.out, "events", "Events end to end", &table)?;
    }
    Ok(())
}

/// The ceiling: a bare idempotent producer and a consumer group, no database.
async fn bare_kafka(args: &EventsArgs, padding: &str) -> anyhow::Result<Measured> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .create()?;
    let measure = |events: usize, rate: Option<f64>| {
        let producer = producer.clone();
        async move {
            let topic = format!("bench-bare-{:08x}", fastrand::u32(..));
            // The topic exists and the group is assigned before the clock starts.
            producer
                .send(
                    FutureRecord::to(&topic).key("warm").payload("warm"),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)?;
            let consumer: StreamConsumer = ClientConfig::new()
                .set("bootstrap.servers", &args.kafka)
                .set("group.id", &topic)
                .set("auto.offset.reset", "earliest")
                .create()?;
            consumer.subscribe(&[&topic])?;
            while consumer.recv().await.is_err() {}
            let started = Instant::now();
            let receiving = async {
                let mut latencies = Vec::with_capacity(events);
                while latencies.len() < events {
                    let Ok(message) = consumer.recv().await else {
                        continue;
                    };
                    let ping: Ping = serde_json::from_slice(message.payload().unwrap_or_default())?;
                    latencies.push(now_us() - ping.sent_us);
                }
                anyhow::Ok(latencies)
            };
            let sending = async {
                let mut pending = Vec::with_capacity(events);
                for n in 0..events {
                    if let Some(rate) = rate {
                        pace(started, n, rate).await;
                    }
                    let ping = Ping {
                        n: n as u64,
                        sent_us: now_us(),
                        padding: padding.to_owned(),
                    };
                    let payload = serde_json::to_string(&ping)?;
                    let key = format!("k{}", n % 64);
                    pending.push(
                        producer
                            .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                            .map_err(|(e, _)| e)?,
                    );
                    if pending.len() >= 1000 {
                        for sent in pending.drain(..) {
                            sent.await?.map_err(|(e, _)| e)?;
                        }
                    }
                }
                for sent in pending {
                    sent.await?.map_err(|(e, _)| e)?;
                }
                anyhow::Ok(())
            };
            let (latencies, sent) = tokio::join!(receiving, sending);
            sent?;
            let latencies = latencies?;
            anyhow::Ok((events as f64 / started.elapsed().as_secs_f64(), latencies))
        }
    };
    let (per_second, _) = measure(args.events, None).await?;
    let rate = per_second / 2.0;
    let events = (rate * args.latency_secs as f64) as usize;
    let (_, latencies) = measure(events, Some(rate)).await?;
    let (p50_ms, p99_ms) = percentiles(latencies);
    Ok(Measured {
        name: "bare rdkafka producer → consumer (no outbox, no inbox)",
        per_second,
        p50_ms,
        p99_ms,
        rate,
    })
}

/// Waits until the `n`th event of a run at `rate` per second is due.
async fn pace(started: Instant, n: usize, rate: f64) {
    let due = started + Duration::from_secs_f64(n as f64 / rate);
    tokio::time::sleep_until(due.into()).await;
}

fn percentiles(mut latencies_us: Vec<i64>) -> (f64, f64) {
    latencies_us.sort_unstable();
    let at = |p: f64| {
        latencies_us
            .get(
                ((latencies_us.len() as f64 * p) as usize)
                    .min(latencies_us.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    (at(0.5), at(0.99))
}

async fn database(dir: &Path, name: &str) -> anyhow::Result<AnyPool> {
    let url = format!("sqlite://{}?mode=rwc", dir.join(name).display());
    let pool = msakit_events::connect(&url).await?;
    for statement in [
        "CREATE TABLE IF NOT EXISTS effects (n BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS writes (n BIGINT NOT NULL)",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    Ok(pool)
}

/// msakit end to end on `transport`: publishers commit (a business row and the event), a
/// consumer in its own database applies each once.
async fn msakit(
    args: &EventsArgs,
    dir: &Path,
    transport: &str,
    padding: &str,
) -> anyhow::Result<Measured> {
    let registry = if transport == "direct" {
        Some(start_registry().await?)
    } else {
        None
    };
    let mut run = 0;
    let mut measure = |events: usize, rate: Option<f64>| {
        run += 1;
        let run_dir = dir.join(format!("{transport}-{run}"));
        let registry = registry.as_ref().map(|(url, _)| url.clone());
        async move {
            std::fs::create_dir_all(&run_dir)?;
            let topic = format!("bench-{transport}-{:08x}", fastrand::u32(..));
            let make = |pool: &AnyPool, service: &str| {
                let builder =
                    Events::builder(pool.clone(), service).instance(format!("{service}-1"));
                match &registry {
                    Some(url) => {
                        let client = msakit::Client::builder().registry_url(url).build()?;
                        anyhow::Ok(builder.transport(Transport::direct(&client)))
                    }
                    None => anyhow::Ok(builder.transport(Transport::kafka(&args.kafka))),
                }
            };
            let consumer_db = database(&run_dir, "consumer.db").await?;
            let seen = Arc::new(Mutex::new(Seen::default()));
            let consumer = make(&consumer_db, "consumer")?.start().await?;
            consumer
                .subscribe("consumer", &topic, Apply(Arc::clone(&seen)))
                .await?;
            let _serving = match &registry {
                Some(url) => Some(serve(url, &consumer).await?),
                None => None,
            };
            let publisher_db = database(&run_dir, "publisher.db").await?;
            let publisher = make(&publisher_db, "publisher")?.start().await?;
            // Warm: the path is up (groups found, partitions assigned) before the clock starts.
            publish(&publisher, &topic, u64::MAX, padding).await?;
            wait_for(&seen, 1, Duration::from_secs(60)).await?;
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .latencies_us
                .clear();
            let started = Instant::now();
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..args.publishers {
                let publisher = publisher.clone();
                let topic = topic.clone();
                let next = Arc::clone(&next);
                let padding = padding.to_owned();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= events {
                            return anyhow::Ok(());
                        }
                        if let Some(rate) = rate {
                            pace(started, n, rate).await;
                        }
                        publish(&publisher, &topic, n as u64, &padding).await?;
                    }
                }));
            }
            for task in tasks {
                task.await??;
            }
            wait_for(&seen, events + 1, Duration::from_secs(600)).await?;
            let (last, latencies, duplicates) = {
                let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                (
                    seen.last.context("applied")?,
                    seen.latencies_us.clone(),
                    seen.duplicates,
                )
            };
            anyhow::ensure!(duplicates == 0, "{duplicates} events applied twice");
            publisher.shutdown().await;
            consumer.shutdown().await;
            anyhow::Ok((events as f64 / (last - started).as_secs_f64(), latencies))
        }
    };
    let (per_second, _) = measure(args.events, None).await?;
    let rate = per_second / 2.0;
    let events = (rate * args.latency_secs as f64) as usize;
    let (_, latencies) = measure(events, Some(rate)).await?;
    let (p50_ms, p99_ms) = percentiles(latencies);
    let name = if transport == "kafka" {
        "msakit-events on Kafka (outbox → relay → Kafka → inbox)"
    } else {
        "msakit-events direct (outbox → relay → HTTP via the registry → inbox)"
    };
    Ok(Measured {
        name,
        per_second,
        p50_ms,
        p99_ms,
        rate,
    })
}

/// The database's own limit: the publishing tasks committing a row per transaction.
async fn sqlite_commits(args: &EventsArgs, dir: &Path) -> anyhow::Result<f64> {
    let pool = database(dir, "commits.db").await?;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.publishers {
        let pool = pool.clone();
        let next = Arc::clone(&next);
        let events = args.events;
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < events {
                let mut tx = pool.begin().await?;
                sqlx::query("INSERT INTO writes (n) VALUES (1)")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(args.events as f64 / started.elapsed().as_secs_f64())
}

/// One business transaction: a row and its event.
async fn publish(events: &Events, topic: &str, n: u64, padding: &str) -> anyhow::Result<()> {
    let mut tx = events.pool().begin().await?;
    sqlx::query("INSERT INTO writes (n) VALUES ($1)")
        .bind(n as i64)
        .execute(&mut *tx)
        .await?;
    let ping = Ping {
        n,
        sent_us: now_us(),
        padding: padding.to_owned(),
    };
    events
        .publish(&mut tx, topic, &format!("k{}", n % 64), &ping)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn wait_for(seen: &Mutex<Seen>, count: usize, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while seen.lock().unwrap_or_else(|e| e.into_inner()).ids.len() < count {
        anyhow::ensure!(started.elapsed() < within, "not applied within {within:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// A registry in this process, on loopback.
async fn start_registry() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = msakit_registry::run(
            listener,
            msakit_registry::RegistryConfig::default(),
            std::future::pending(),
        )
        .await;
    });
    Ok((url, task))
}

/// The consumer's routes on loopback, registered with its subscriptions.
async fn serve(
    registry: &str,
    events: &Events,
) -> anyhow::Result<(msakit::Registration, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let routes = events.routes();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, routes).await;
    });
    let client = msakit::Client::builder().registry_url(registry).build()?;
    let (key, value) = events.registration_metadata();
    let registration = client.registration(
        msakit::RegistrationOptions::new(
            "consumer",
            &format!("consumer-{port}"),
            "127.0.0.1",
            port,
        )
        .metadata(key, value),
    )?;
    registration.registered().await;
    Ok((registration, server))
}
