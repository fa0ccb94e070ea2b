//! Part of `msakit-bench java`: how long a config change takes to reach its clients. A real
//! Spring Cloud Config client (the `interop/spring-cloud` inventory app: `spring.config.import=
//! configserver:`, its values held by a `@RefreshScope` bean) refreshed the moment the change is
//! made (`POST /actuator/refresh`, repeated until it serves the new value: without Spring Cloud
//! Bus and a broker, a Spring client learns of a change only when it is refreshed), and an msakit
//! SDK live config (`Client::config`, pushed over the config server's watch stream). The changes:
//! a file rewritten in the served directory (both servers' native backends), the same file
//! committed (Spring Cloud Config Server's git backend), and, on ours, a write through its API.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::java::launch;
use crate::java_load::ConfigServer;
use crate::process::free_port;

/// How a change is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// `inventory.yml` rewritten (a temporary file renamed over it) — and, for the git backend,
    /// committed.
    File,
    /// `PUT /v1/config/inventory/bench/main` on ours.
    ApiWrite,
}

impl Change {
    fn name(self, server: ConfigServer) -> &'static str {
        match (self, server) {
            (Change::File, ConfigServer::SpringGit) => "file committed to its repository",
            (Change::File, _) => "file rewritten in its directory",
            (Change::ApiWrite, _) => "write through its API (`PUT /v1/config/…`)",
        }
    }

    /// The key of the inventory app's `/items` that this kind of change moves.
    fn item(self) -> &'static str {
        match self {
            Change::File => "owner",
            Change::ApiWrite => "greeting",
        }
    }
}

/// What one server's run measured.
#[derive(Debug, Default)]
struct Seen {
    /// From the change until the Spring client served it, per change kind.
    spring: Vec<(Change, Vec<Duration>)>,
    /// From the change until the SDK's live config held it (ours only).
    sdk: Vec<(Change, Vec<Duration>)>,
    /// How long each `POST /actuator/refresh` took.
    refreshes: Vec<Duration>,
}

/// The SDK's live configuration as it moved: the two watched values, and when.
type Observed = Arc<Mutex<Vec<(String, String, Instant)>>>;

/// Unmeasured cycles first, so the JVMs' refresh path is compiled before it is timed.
const WARM_UP_CYCLES: usize = 5;

/// Runs the config propagation comparison; returns the report (Markdown).
pub(crate) async fn propagation(
    root: &Path,
    dir: &Path,
    xmx: &str,
    cycles: usize,
) -> anyhow::Result<String> {
    let inventory = root.join("interop/spring-cloud/inventory/target/inventory.jar");
    if !inventory.exists() {
        bail!(
            "{} is missing (mvn package in interop/spring-cloud)",
            inventory.display()
        );
    }
    let mut report = format!(
        "Time from a config change until a client serves it. Spring client: \
         `interop/spring-cloud`'s inventory app (Spring Cloud 2025.1.4's config client, \
         `spring.config.import=configserver:`, values in a `@RefreshScope` bean), sent `POST \
         /actuator/refresh` the moment the change is made and again until its `/items` serves \
         the new value (without Spring Cloud Bus and a broker nothing else tells it). SDK: \
         `msakit::Client::config` on our watch stream. {cycles} changes per row after \
         {WARM_UP_CYCLES} unmeasured, each after a random 0–500 ms pause. Spring Cloud Config \
         Server: `java -Xmx{xmx}`, native backend over the directory, git backend over a local \
         repository (`refresh-rate` 0: it fetches on every request); ours: release binary, \
         `--native-dir` over the same directory (reloaded on change after a 50 ms settle).\n\n\
         | server | change | client | p50 / p99 | one refresh, p50 |\n\
         |---|---|---|---:|---:|\n"
    );
    let sides = [
        ConfigServer::Ours,
        ConfigServer::SpringNative,
        ConfigServer::SpringGit,
    ];
    for side in sides {
        eprintln!("config propagation: {}", side.name());
        let seen = match measure(root, dir, xmx, side, &inventory, cycles).await {
            Ok(seen) => seen,
            // Said in the table, so the other servers' figures are kept.
            Err(e) => {
                let _ = writeln!(report, "| {} | — | failed: {e:#} | | |", side.name());
                continue;
            }
        };
        let refresh = quantiles(&seen.refreshes).0;
        for (client, rows) in [
            ("Spring client, refreshed", &seen.spring),
            ("msakit SDK", &seen.sdk),
        ] {
            for (change, times) in rows {
                let (p50, p99) = quantiles(times);
                let _ = writeln!(
                    report,
                    "| {} | {} | {client} | {p50:.0} / {p99:.0} ms | {} |",
                    side.name(),
                    change.name(side),
                    if client.starts_with("Spring") {
                        format!("{refresh:.0} ms")
                    } else {
                        "—".to_owned()
                    }
                );
            }
        }
    }
    Ok(report)
}

/// p50 and p99 of `times`, in milliseconds.
fn quantiles(times: &[Duration]) -> (f64, f64) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let q = |p: f64| crate::load::quantile(&sorted, p).as_secs_f64() * 1000.0;
    (q(0.5), q(0.99))
}

/// Starts `side` over a fresh directory and the Spring client against it (and on ours an SDK
/// live config), then times `cycles` changes of each kind the server takes.
async fn measure(
    root: &Path,
    dir: &Path,
    xmx: &str,
    side: ConfigServer,
    inventory: &Path,
    cycles: usize,
) -> anyhow::Result<Seen> {
    let scratch = dir.join(format!("config-propagation-{side:?}"));
    let repo = scratch.join("repo");
    std::fs::create_dir_all(&repo)?;
    std::fs::write(repo.join("application.yml"), "shared.region: region-0\n")?;
    write_inventory(&repo, "owner-0")?;
    if side == ConfigServer::SpringGit {
        crate::git_repo::init(&repo)?;
    }
    let port = free_port()?;
    let command = side.command(root, xmx, port, &repo, &scratch);
    let (server, _) = launch(command, port, "/inventory/bench", &scratch).await?;
    let url = server.url.clone();

    let app_port = free_port()?;
    let app_dir = scratch.join("inventory");
    std::fs::create_dir_all(&app_dir)?;
    let mut app = Command::new("java");
    app.args(["-Xmx256m", "-jar"])
        .arg(inventory)
        .arg(format!("--server.port={app_port}"))
        .arg(format!("--spring.config.import=configserver:{url}"))
        .arg("--spring.cloud.config.label=main")
        .arg("--spring.cloud.config.profile=bench")
        .arg("--eureka.client.enabled=false")
        .arg("--eureka.instance.instance-id=inventory-config");
    let (_app, _) = launch(app, app_port, "/items", &app_dir).await?;
    let app_url = format!("http://127.0.0.1:{app_port}");
    let client = reqwest::Client::new();
    let first = items(&client, &app_url).await?;
    if first["owner"] != "owner-0" {
        bail!("the Spring client did not load its config from the server: {first}");
    }

    let observed: Observed = Arc::default();
    let _sdk = if side == ConfigServer::Ours {
        let sdk = msakit::Client::builder().config_url(url.clone()).build()?;
        let live = sdk
            .config::<serde_json::Value>(msakit::ConfigClientOptions::new("inventory", &["bench"]))
            .await?;
        let mut changes = live.subscribe();
        let observed = Arc::clone(&observed);
        Some(tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let value = changes.borrow_and_update().clone();
                let text = |key: &str| value["inventory"][key].as_str().unwrap_or("").to_owned();
                observed.lock().unwrap_or_else(|e| e.into_inner()).push((
                    text("owner"),
                    text("greeting"),
                    Instant::now(),
                ));
            }
            drop(live);
        }))
    } else {
        None
    };

    let changes: &[Change] = if side == ConfigServer::Ours {
        &[Change::File, Change::ApiWrite]
    } else {
        &[Change::File]
    };
    let mut seen = Seen::default();
    for &change in changes {
        let (mut spring, mut sdk) = (Vec::new(), Vec::new());
        for cycle in 0..WARM_UP_CYCLES + cycles {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..500))).await;
            let value = format!("{}-{cycle}", change.item());
            let t0 = Instant::now();
            match change {
                Change::File => {
                    write_inventory(&repo, &value)?;
                    side.publish(&repo, &value)?;
                }
                Change::ApiWrite => {
                    let response = client
                        .put(format!("{url}/v1/config/inventory/bench/main"))
                        .header("content-type", "application/yaml")
                        .body(format!("inventory.greeting: {value}\n"))
                        .send()
                        .await?;
                    if !response.status().is_success() {
                        bail!("PUT inventory/bench: {}", response.status());
                    }
                }
            }
            let made = if change == Change::File {
                Instant::now()
            } else {
                t0
            };
            let (at, refreshes) = refresh_until(&client, &app_url, change.item(), &value).await?;
            if cycle < WARM_UP_CYCLES {
                continue;
            }
            spring.push(at - made);
            seen.refreshes.extend(refreshes);
            if side == ConfigServer::Ours {
                sdk.push(sdk_saw(&observed, change, &value).await? - made);
            }
        }
        eprintln!("  {:?}: {:?}", change, quantiles(&spring));
        seen.spring.push((change, spring));
        if side == ConfigServer::Ours {
            seen.sdk.push((change, sdk));
        }
    }
    Ok(seen)
}

/// Writes `inventory.yml` as an editor or a GitOps tool does: a new file renamed over the old.
fn write_inventory(repo: &Path, owner: &str) -> anyhow::Result<()> {
    let staged = repo.join(".inventory.yml.tmp");
    std::fs::write(
        &staged,
        format!("inventory.owner: {owner}\ninventory.greeting: from-file\n"),
    )?;
    std::fs::rename(&staged, repo.join("inventory.yml"))?;
    Ok(())
}

/// The Spring client's `/items`.
async fn items(client: &reqwest::Client, app_url: &str) -> anyhow::Result<serde_json::Value> {
    let response = client.get(format!("{app_url}/items")).send().await?;
    if !response.status().is_success() {
        bail!("GET /items: {}", response.status());
    }
    response.json().await.context("GET /items")
}

/// Refreshes the Spring client until its `item` is `value`: when it first served it, and how
/// long each refresh took.
async fn refresh_until(
    client: &reqwest::Client,
    app_url: &str,
    item: &str,
    value: &str,
) -> anyhow::Result<(Instant, Vec<Duration>)> {
    let started = Instant::now();
    let mut refreshes = Vec::new();
    loop {
        let sent = Instant::now();
        let response = client
            .post(format!("{app_url}/actuator/refresh"))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("POST /actuator/refresh: {}", response.status());
        }
        refreshes.push(sent.elapsed());
        if items(client, app_url).await?[item] == value {
            return Ok((Instant::now(), refreshes));
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the Spring client never served {item} = {value}");
        }
    }
}

/// When the SDK's live config first held `value` (waiting for it if it has not yet).
async fn sdk_saw(observed: &Observed, change: Change, value: &str) -> anyhow::Result<Instant> {
    let started = Instant::now();
    loop {
        {
            let observed = observed.lock().unwrap_or_else(|e| e.into_inner());
            let held = observed.iter().find(|(owner, greeting, _)| match change {
                Change::File => owner == value,
                Change::ApiWrite => greeting == value,
            });
            if let Some((_, _, at)) = held {
                return Ok(*at);
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the SDK never held {value}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
