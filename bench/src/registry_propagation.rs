//! Part of `msakit-bench java`: how long a change in a registry takes to reach its clients. A real
//! Netflix Eureka Java client (the `interop/spring-cloud` inventory app: Spring Cloud 2025,
//! registry fetch every second) polled through its `/discovery` endpoint every 5 ms, and an
//! msakit SDK watcher (`msakit::discover`, pushed over the registry's watch stream), from a
//! register, a cancel, and a kill (heartbeats stop; the lease runs out), on msakit-registry
//! and on Eureka's server with its read-only response cache off and on.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt;
use tokio::process::Command;
use tower::discover::Change;

use crate::java::{jvm, launch, ours_command};
use crate::java_load::{Lease, instance_json};
use crate::process::{Server, free_port};

/// One registry under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    EurekaCacheOff,
    EurekaCacheOn,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Ours => "msakit-registry",
            Side::EurekaCacheOff => "Eureka server, response cache off",
            Side::EurekaCacheOn => "Eureka server, response cache on (default)",
        }
    }
}

/// When each change was seen, per event kind: by the Java client, and by the SDK watcher.
#[derive(Debug, Default)]
struct Seen {
    java: [Vec<Duration>; 3],
    sdk: [Vec<Duration>; 3],
}

/// Instances the SDK watcher has seen added and removed, with when.
#[derive(Debug, Default)]
struct Watched {
    inserted: Vec<(String, Instant)>,
    removed: Vec<(String, Instant)>,
}

/// Runs the propagation comparison; returns the report (Markdown).
pub(crate) async fn propagation(
    root: &Path,
    dir: &Path,
    xmx: &str,
    cycles: usize,
    cycles_cached: usize,
) -> anyhow::Result<String> {
    crate::java::build_interop_apps(root)?;
    let inventory = root.join("interop/spring-cloud/inventory/target/inventory.jar");
    let eureka = root.join("bench/java/eureka-server/target/eureka-server.jar");
    let registry = root.join("target/release/msakit-registry");
    let mut report = format!(
        "Time from a change until a client sees it. Java client: `interop/spring-cloud`'s \
         inventory app (Spring Cloud 2025.1.4's Eureka client, `registry-fetch-interval-seconds: \
         1`), its `/discovery` (DiscoveryClient, no load-balancer cache) polled every 5 ms. SDK: \
         `msakit::discover` on msakit-registry's watch stream. register = POST until listed; \
         cancel = DELETE until gone; kill = heartbeats stop (lease 3 s) until gone, counted from \
         the last heartbeat. Each cycle starts after a random 0–1 s pause, so the clients' and \
         servers' timers are met at random phases. Eureka's server: `java -Xmx{xmx}`, standalone, \
         eviction every second, self-preservation off; ours: self-preservation off, sweep every \
         100 ms.\n\n\
         | server | client | cycles | register p50 / p99 | cancel p50 / p99 | kill p50 / p99 |\n\
         |---|---|---:|---:|---:|---:|\n"
    );
    for side in [Side::Ours, Side::EurekaCacheOff, Side::EurekaCacheOn] {
        let scratch = dir.join(format!("propagation-{side:?}"));
        std::fs::create_dir_all(&scratch)?;
        let port = free_port()?;
        let command = match side {
            Side::Ours => {
                let settings = scratch.join("registry.yml");
                std::fs::write(
                    &settings,
                    "self_preservation:\n  enabled: false\nsweep_interval: 100ms\n",
                )?;
                let mut command = ours_command(&registry, port, &scratch);
                command.arg("--config").arg(&settings);
                command
            }
            Side::EurekaCacheOff | Side::EurekaCacheOn => {
                let mut command = jvm(&eureka, xmx, port);
                command.arg(format!(
                    "--eureka.server.use-read-only-response-cache={}",
                    side == Side::EurekaCacheOn
                ));
                command
            }
        };
        eprintln!("propagation: {}", side.name());
        let (server, _) = launch(command, port, "/eureka/apps", &scratch).await?;
        let n = if side == Side::EurekaCacheOn {
            cycles_cached
        } else {
            cycles
        };
        let seen = match measure(side, &server, &inventory, &scratch, n).await {
            Ok(seen) => seen,
            // Said in the table, so the other servers' figures are kept.
            Err(e) => {
                let _ = writeln!(report, "| {} | — | failed: {e:#} | | | |", side.name());
                continue;
            }
        };
        let row = |times: &[Vec<Duration>; 3]| -> String {
            times
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    t.sort();
                    let q = |p: f64| crate::load::quantile(&t, p).as_secs_f64() * 1000.0;
                    format!("{:.0} / {:.0} ms", q(0.5), q(0.99))
                })
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let _ = writeln!(
            report,
            "| {} | Java Eureka client | {n} | {} |",
            side.name(),
            row(&seen.java)
        );
        if side == Side::Ours {
            let _ = writeln!(
                report,
                "| {} | msakit SDK watcher | {n} | {} |",
                side.name(),
                row(&seen.sdk)
            );
        }
    }
    Ok(report)
}

/// Starts the Java client against `server`, then runs `cycles` register / cancel / kill cycles.
async fn measure(
    side: Side,
    server: &Server,
    inventory: &Path,
    scratch: &Path,
    cycles: usize,
) -> anyhow::Result<Seen> {
    let url = server.url.clone();
    let client = reqwest::Client::new();
    // An anchor instance, so the service exists for the SDK's first look.
    post(&client, &url, "bench-target-anchor", 600).await?;

    let app_port = free_port()?;
    let app_dir = scratch.join("inventory");
    std::fs::create_dir_all(&app_dir)?;
    let mut app = Command::new("java");
    app.args([
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-Xmx256m",
        "-jar",
    ])
    .arg(inventory)
    .arg(format!("--server.port={app_port}"))
    .arg(format!(
        "--eureka.client.service-url.defaultZone={url}/eureka/"
    ))
    .arg("--eureka.instance.instance-id=inventory-propagation")
    .arg("--eureka.instance.ip-address=127.0.0.1")
    .arg("--spring.config.import=optional:configserver:http://127.0.0.1:1");
    let (_app, _) = launch(app, app_port, "/discovery", &app_dir).await?;
    let discovery = format!("http://127.0.0.1:{app_port}/discovery");
    // The Java client has fetched once it lists the anchor.
    wait_for(
        &client,
        &discovery,
        "bench-target-anchor",
        Presence::Listed,
        Duration::from_secs(120),
    )
    .await?;

    let watched = Arc::new(Mutex::new(Watched::default()));
    let _watcher = if side == Side::Ours {
        let sdk = msakit::Client::builder()
            .registry_url(url.clone())
            .build()?
            .discovery()?;
        let mut changes = msakit::discover(&sdk, "bench-target", |_| ());
        let watched = Arc::clone(&watched);
        Some(tokio::spawn(async move {
            while let Some(Ok(change)) = changes.next().await {
                let mut watched = watched.lock().unwrap_or_else(|e| e.into_inner());
                match change {
                    Change::Insert(id, ()) => watched.inserted.push((id, Instant::now())),
                    Change::Remove(id) => watched.removed.push((id, Instant::now())),
                }
            }
        }))
    } else {
        None
    };

    let mut seen = Seen::default();
    let limit = Duration::from_secs(90);
    for cycle in 0..cycles {
        // Register, then cancel.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
        let id = format!("bench-target-{cycle}");
        let t0 = Instant::now();
        post(&client, &url, &id, 3).await?;
        let heart = Heart::start(&client, &url, &id);
        seen.java[0].push(wait_for(&client, &discovery, &id, Presence::Listed, limit).await? - t0);
        record_sdk(side, &watched, &id, Presence::Listed, t0, &mut seen.sdk[0]).await?;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
        heart.stop().await?;
        let t0 = Instant::now();
        let response = client
            .delete(format!("{url}/eureka/apps/BENCH-TARGET/{id}"))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("cancel {id}: {}", response.status());
        }
        seen.java[1].push(wait_for(&client, &discovery, &id, Presence::Gone, limit).await? - t0);
        record_sdk(side, &watched, &id, Presence::Gone, t0, &mut seen.sdk[1]).await?;

        // Kill: heartbeats every second until the client lists it and 3 s more, then none.
        let id = format!("bench-target-{cycle}-killed");
        post(&client, &url, &id, 3).await?;
        let heart = Heart::start(&client, &url, &id);
        wait_for(&client, &discovery, &id, Presence::Listed, limit).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let last = heart.stop().await?;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
        seen.java[2].push(wait_for(&client, &discovery, &id, Presence::Gone, limit).await? - last);
        record_sdk(side, &watched, &id, Presence::Gone, last, &mut seen.sdk[2]).await?;
        eprintln!(
            "  cycle {cycle}: {:?}",
            seen.java.iter().map(|t| t.last()).collect::<Vec<_>>()
        );
    }
    Ok(seen)
}

/// Heartbeats for one instance, every second, until stopped: an instance must stay alive while
/// a client with a 30 s cache has yet to see it.
struct Heart {
    beating: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Instant>,
}

impl Heart {
    fn start(client: &reqwest::Client, url: &str, id: &str) -> Self {
        let beating = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (client, url, id, alive) = (
            client.clone(),
            url.to_owned(),
            id.to_owned(),
            Arc::clone(&beating),
        );
        let task = tokio::spawn(async move {
            let mut last = Instant::now();
            while alive.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if !alive.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let renewed = client
                    .put(format!(
                        "{url}/eureka/apps/BENCH-TARGET/{id}?status=UP&lastDirtyTimestamp=1"
                    ))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if renewed {
                    last = Instant::now();
                }
            }
            last
        });
        Self { beating, task }
    }

    /// Stops; when the last heartbeat was answered.
    async fn stop(self) -> anyhow::Result<Instant> {
        self.beating
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// Whether an instance is to be listed or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Listed,
    Gone,
}

/// Registers `id` under BENCH-TARGET (VIP `bench-target`) with a lease of `lease_s` seconds.
async fn post(client: &reqwest::Client, url: &str, id: &str, lease_s: u32) -> anyhow::Result<()> {
    let lease = Lease {
        renewal_secs: 1,
        duration_secs: lease_s,
    };
    let body = instance_json("BENCH-TARGET", id, 1, lease);
    let response = client
        .post(format!("{url}/eureka/apps/BENCH-TARGET"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("register {id}: {}", response.status());
    }
    Ok(())
}

/// Polls the Java client's `/discovery` every 5 ms until `id` is `presence`; when it was.
async fn wait_for(
    client: &reqwest::Client,
    discovery: &str,
    id: &str,
    presence: Presence,
    limit: Duration,
) -> anyhow::Result<Instant> {
    let started = Instant::now();
    let quoted = format!("\"{id}\"");
    loop {
        if let Ok(response) = client.get(discovery).send().await
            && let Ok(body) = response.text().await
            && body.contains(&quoted) == (presence == Presence::Listed)
        {
            return Ok(Instant::now());
        }
        if started.elapsed() > limit {
            bail!("{id} not {presence:?} at the Java client within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// On ours, when the SDK watcher saw `id` become `presence` (waiting for it if it has not yet).
async fn record_sdk(
    side: Side,
    watched: &Mutex<Watched>,
    id: &str,
    presence: Presence,
    t0: Instant,
    into: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    if side != Side::Ours {
        return Ok(());
    }
    let started = Instant::now();
    loop {
        {
            let watched = watched.lock().unwrap_or_else(|e| e.into_inner());
            let list = match presence {
                Presence::Listed => &watched.inserted,
                Presence::Gone => &watched.removed,
            };
            if let Some((_, at)) = list.iter().rev().find(|(seen, _)| seen == id) {
                into.push(at.saturating_duration_since(t0));
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("{id} never {presence:?} at the SDK watcher");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
