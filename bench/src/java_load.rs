//! Part of `msakit-bench java`: the same load, through the same API, on our servers and on the
//! Java ones they replace. The registry and Netflix Eureka's server (read-only response cache on,
//! its default, and off) through Eureka's REST API: registrations per second, heartbeats per
//! second, the full `/eureka/apps` and `/eureka/apps/delta` fetch. The config servers through
//! Spring Cloud Config's API over the same documents (a directory; for Spring Cloud Config
//! Server's git backend, a local repository of it): Environment reads per second and
//! their p99, plain and with `{cipher}` values (each server's own ciphertext, from its own
//! `/encrypt`). Each JVM is warmed up with the same load first; the sides take turns, A B A B.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::java::{JavaArgs, jvm, launch, ours_command, turns};
use crate::load::{Measured, closed_loop};
use crate::process::{Server, free_port};
use tokio::process::Command;

/// One registry under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registry {
    Ours,
    /// Eureka's server with its read-only response cache on (its default) or off.
    Eureka(ResponseCache),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseCache {
    On,
    Off,
}

impl Registry {
    fn name(self) -> &'static str {
        match self {
            Registry::Ours => "msakit-registry",
            Registry::Eureka(ResponseCache::On) => "Eureka server (response cache on)",
            Registry::Eureka(ResponseCache::Off) => "Eureka server (response cache off)",
        }
    }
}

/// What one registry run measured.
#[derive(Debug, Clone, Default)]
struct RegistryFigures {
    registrations_per_s: f64,
    heartbeats: Measured,
    /// The first fetch after the load, and the median of ten.
    apps_ms: (f64, f64),
    apps_bytes: usize,
    delta_ms: (f64, f64),
    rss_mib: f64,
}

/// Concurrent requests in flight, for every phase.
const CONCURRENCY: usize = 64;
/// Applications the instances are spread over.
const APPS: usize = 100;

/// Measures the registries at each size asked for, then the config servers; returns the
/// report (Markdown).
pub(crate) async fn throughput(args: &JavaArgs, root: &Path, dir: &Path) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let mut report = String::new();
    for &instances in &args.instances {
        report.push_str(&registries(args, root, dir, &client, instances).await?);
        report.push('\n');
    }
    report.push_str(&config_servers(args, root, dir, &client).await?);
    Ok(report)
}

/// Both registries under the same load with `instances` instances. A side that fails (a
/// refused request, a JVM out of memory) is a row saying so: where it fell over.
async fn registries(
    args: &JavaArgs,
    root: &Path,
    dir: &Path,
    client: &reqwest::Client,
    instances: usize,
) -> anyhow::Result<String> {
    let release = root.join("target/release");
    let apps = root.join("bench/java");
    let mut report = String::new();
    let sides = [
        Registry::Ours,
        Registry::Eureka(ResponseCache::On),
        Registry::Eureka(ResponseCache::Off),
    ];
    let mut figures: Vec<Vec<Result<RegistryFigures, String>>> = vec![Vec::new(); sides.len()];
    for round in 0..args.load_rounds {
        for i in turns(round, sides.len()) {
            let side = sides[i];
            let scratch = dir.join(format!("registry-load-{instances}-{round}-{i}"));
            std::fs::create_dir_all(&scratch)?;
            let port = free_port()?;
            let command = match side {
                Registry::Ours => ours_command(&release.join("msakit-registry"), port, &scratch),
                Registry::Eureka(cache) => {
                    let mut command = jvm(
                        &apps.join("eureka-server/target/eureka-server.jar"),
                        &args.xmx,
                        port,
                    );
                    command.arg(format!(
                        "--eureka.server.use-read-only-response-cache={}",
                        cache == ResponseCache::On
                    ));
                    command
                }
            };
            eprintln!(
                "registry load: {} with {instances} instances (round {round})",
                side.name()
            );
            let (server, _) = launch(command, port, "/eureka/apps", &scratch).await?;
            let measured = registry_load(client, &server, instances)
                .await
                .map_err(|e| format!("{e:#}"));
            if let Err(e) = &measured {
                eprintln!("  failed: {e}");
            }
            figures[i].push(measured);
        }
    }
    let _ = writeln!(
        report,
        "Registries through Eureka's REST API, {} rounds A B A B; {instances} instances over {APPS} \
         applications registered by {CONCURRENCY} clients at once (after a warm-up of the same \
         size under other names, so the server holds twice as many), then heartbeats for {:?} by \
         {CONCURRENCY} clients, then the full registry and the delta fetched 10 times each \
         (median). Eureka's server: `java -Xmx{}`, standalone, self-preservation off, eviction \
         every second; ours: release binary, defaults. Load generator and server share the \
         machine's 2 cores.\n\n\
         | server | registrations/s | heartbeats/s | heartbeat p99 | `/eureka/apps` (all {} instances), first / median | size | `/eureka/apps/delta`, first / median | RSS after |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|",
        args.load_rounds,
        args.load_time,
        args.xmx,
        2 * instances,
    );
    // The best round of each side (by heartbeats), or why every round failed.
    let best = |runs: &[Result<RegistryFigures, String>]| -> Result<RegistryFigures, String> {
        let mut done: Vec<RegistryFigures> = runs.iter().filter_map(|r| r.clone().ok()).collect();
        done.sort_by(|a, b| {
            a.heartbeats
                .per_second()
                .total_cmp(&b.heartbeats.per_second())
        });
        done.pop().ok_or_else(|| {
            runs.iter()
                .find_map(|r| r.clone().err())
                .unwrap_or_default()
        })
    };
    let bests: Vec<Result<RegistryFigures, String>> = figures.iter().map(|f| best(f)).collect();
    for (side, f) in sides.iter().zip(&bests) {
        match f {
            Ok(f) => {
                let _ = writeln!(
                    report,
                    "| {} | {:.0} | {:.0} | {:.2} ms | {:.1} / {:.1} ms | {:.0} KiB | {:.1} / {:.1} ms | {:.0} MiB |",
                    side.name(),
                    f.registrations_per_s,
                    f.heartbeats.per_second(),
                    f.heartbeats.quantile(0.99).as_secs_f64() * 1000.0,
                    f.apps_ms.0,
                    f.apps_ms.1,
                    f.apps_bytes as f64 / 1024.0,
                    f.delta_ms.0,
                    f.delta_ms.1,
                    f.rss_mib,
                );
            }
            Err(e) => {
                let _ = writeln!(
                    report,
                    "| {} | fell over: {} | | | | | | |",
                    side.name(),
                    e.replace('|', "/")
                );
            }
        }
    }
    if let Ok(ours) = &bests[0] {
        for (side, theirs) in sides.iter().zip(&bests).skip(1) {
            let Ok(theirs) = theirs else { continue };
            let _ = writeln!(
                report,
                "\n- against the {}: registrations {:.1}×, heartbeats {:.1}×; full fetch first {:.2}× as fast, median {:.2}×; RSS 1/{:.1}.",
                side.name(),
                ours.registrations_per_s / theirs.registrations_per_s,
                ours.heartbeats.per_second() / theirs.heartbeats.per_second(),
                theirs.apps_ms.0 / ours.apps_ms.0,
                theirs.apps_ms.1 / ours.apps_ms.1,
                theirs.rss_mib / ours.rss_mib,
            );
        }
    }
    Ok(report)
}

/// An instance's lease as its Eureka registration states it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    pub(crate) renewal_secs: u32,
    pub(crate) duration_secs: u32,
}

/// Eureka's defaults: a heartbeat every 30 s, expiry after 90 s.
pub(crate) const EUREKA_DEFAULT_LEASE: Lease = Lease {
    renewal_secs: 30,
    duration_secs: 90,
};

/// The JSON body of a registration of instance `id` (the `n`th: its host and address) of `app`.
pub(crate) fn instance_json(app: &str, id: &str, n: usize, lease: Lease) -> String {
    format!(
        r#"{{"instance":{{"instanceId":"{id}","hostName":"host-{n}","app":"{app}","ipAddr":"10.{}.{}.{}","status":"UP","overriddenStatus":"UNKNOWN","port":{{"$":8080,"@enabled":"true"}},"securePort":{{"$":443,"@enabled":"false"}},"countryId":1,"dataCenterInfo":{{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"}},"leaseInfo":{{"renewalIntervalInSecs":{},"durationInSecs":{}}},"metadata":{{"zone":"zone-a"}},"homePageUrl":"http://host-{n}:8080/","statusPageUrl":"http://host-{n}:8080/actuator/info","healthCheckUrl":"http://host-{n}:8080/actuator/health","vipAddress":"{}","secureVipAddress":"{}","isCoordinatingDiscoveryServer":"false","lastUpdatedTimestamp":"1","lastDirtyTimestamp":"1"}}}}"#,
        (n >> 16) & 255,
        (n >> 8) & 255,
        n & 255,
        lease.renewal_secs,
        lease.duration_secs,
        app.to_lowercase(),
        app.to_lowercase(),
    )
}

/// Registers `count` instances named `prefix`-n with `concurrency` clients; registrations/s.
async fn register(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<f64> {
    let (client, url, prefix) = (
        client.clone(),
        Arc::<str>::from(url),
        Arc::<str>::from(prefix),
    );
    let measured = closed_loop(
        CONCURRENCY,
        Duration::from_secs(600),
        count as u64,
        move |_, i| {
            let (client, url, prefix) = (client.clone(), Arc::clone(&url), Arc::clone(&prefix));
            async move {
                let n = i as usize;
                let app = format!("{prefix}-APP-{}", n % APPS);
                let id = format!("{prefix}-host-{n}:{}:8080", app.to_lowercase());
                client
                    .post(format!("{url}/eureka/apps/{app}"))
                    .header("content-type", "application/json")
                    .body(instance_json(&app, &id, n, EUREKA_DEFAULT_LEASE))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        },
    )
    .await;
    if measured.errors > 0 || measured.ops < count as u64 {
        bail!(
            "{} of {count} registrations failed",
            count as u64 - measured.ops
        );
    }
    Ok(measured.per_second())
}

async fn registry_load(
    client: &reqwest::Client,
    server: &Server,
    instances: usize,
) -> anyhow::Result<RegistryFigures> {
    let url = server.url.as_str();
    // Warm-up: the same work under other names (the JIT's, and our allocator's).
    register(client, url, "WARM", instances).await?;
    heartbeats(client, url, "WARM", instances, Duration::from_secs(5)).await?;
    for _ in 0..3 {
        fetch(client, &format!("{url}/eureka/apps/")).await?;
    }
    let registrations_per_s = register(client, url, "BENCH", instances).await?;
    let heartbeats = heartbeats(client, url, "BENCH", instances, Duration::from_secs(10)).await?;
    let (apps_ms, apps_bytes) = median_fetch(client, &format!("{url}/eureka/apps/")).await?;
    let (delta_ms, _) = median_fetch(client, &format!("{url}/eureka/apps/delta")).await?;
    Ok(RegistryFigures {
        registrations_per_s,
        heartbeats,
        apps_ms,
        apps_bytes,
        delta_ms,
        rss_mib: server.rss_mib(),
    })
}

async fn heartbeats(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    count: usize,
    time: Duration,
) -> anyhow::Result<Measured> {
    let (client, url, prefix) = (
        client.clone(),
        Arc::<str>::from(url),
        Arc::<str>::from(prefix),
    );
    let measured = closed_loop(CONCURRENCY, time, u64::MAX, move |_, i| {
        let (client, url, prefix) = (client.clone(), Arc::clone(&url), Arc::clone(&prefix));
        async move {
            let n = i as usize % count;
            let app = format!("{prefix}-APP-{}", n % APPS);
            let id = format!("{prefix}-host-{n}:{}:8080", app.to_lowercase());
            client
                .put(format!(
                    "{url}/eureka/apps/{app}/{id}?status=UP&lastDirtyTimestamp=1"
                ))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    if measured.errors > 0 {
        bail!("{} heartbeats failed", measured.errors);
    }
    Ok(measured)
}

/// A server that takes longer than this for one whole-registry fetch has fallen over (a JVM
/// out of heap answers nothing, or next to nothing, for minutes).
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

async fn fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let response = client
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .header("accept", "application/json")
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("GET {url}: {}", response.status());
    }
    Ok(response.bytes().await?.len())
}

/// The time of the first of 10 fetches of `url` and their median, in ms, and the last body's
/// size. (Both servers keep rendered documents — ours until the next change or a second, Eureka's
/// cache for 30 s — so the first shows the cost of rendering and the median that of serving.)
async fn median_fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<((f64, f64), usize)> {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..10 {
        let started = Instant::now();
        size = fetch(client, url).await?;
        times.push(started.elapsed());
    }
    let first = times[0].as_secs_f64() * 1000.0;
    times.sort();
    Ok(((first, times[times.len() / 2].as_secs_f64() * 1000.0), size))
}

/// One config server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigServer {
    Ours,
    SpringNative,
    SpringGit,
}

impl ConfigServer {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ConfigServer::Ours => "msakit-config-server",
            ConfigServer::SpringNative => "Spring Cloud Config Server (native)",
            ConfigServer::SpringGit => "Spring Cloud Config Server (git)",
        }
    }

    /// The server's command over the documents in `repo` (for git, a repository on `main`).
    pub(crate) fn command(
        self,
        root: &Path,
        xmx: &str,
        port: u16,
        repo: &Path,
        scratch: &Path,
    ) -> Command {
        match self {
            ConfigServer::Ours => {
                let mut command = ours_command(
                    &root.join("target/release/msakit-config-server"),
                    port,
                    scratch,
                );
                command
                    .arg("--native-dir")
                    .arg(repo)
                    .env("MSAKIT_CONFIG_ENCRYPT_KEY", OURS_KEY);
                command
            }
            ConfigServer::SpringNative | ConfigServer::SpringGit => {
                let jar = root.join("bench/java/config-server/target/config-server.jar");
                let mut command = jvm(&jar, xmx, port);
                command.arg(format!("--encrypt.key={SPRING_KEY}"));
                if self == ConfigServer::SpringGit {
                    command
                        .arg("--spring.profiles.active=git")
                        .arg(format!(
                            "--spring.cloud.config.server.git.uri=file:{}",
                            repo.display()
                        ))
                        .arg(format!(
                            "--spring.cloud.config.server.git.basedir={}",
                            scratch.join("git-clone").display()
                        ))
                        .arg("--spring.cloud.config.server.git.default-label=main");
                } else {
                    command.arg(format!(
                        "--spring.cloud.config.server.native.search-locations=file:{}/",
                        repo.display()
                    ));
                }
                command
            }
        }
    }

    /// Makes what was written into `repo` the server's: a commit for the git backend; the
    /// others read the folder as it is.
    pub(crate) fn publish(self, repo: &Path, what: &str) -> anyhow::Result<()> {
        if self == ConfigServer::SpringGit {
            crate::git_repo::commit_all(repo, what)?;
        }
        Ok(())
    }
}

/// What one config-server run measured.
#[derive(Debug, Clone, Default)]
struct ConfigFigures {
    plain: Measured,
    cipher: Measured,
    rss_mib: f64,
}

/// A base64 AES-256 key for ours; Spring derives its key from the text.
const OURS_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SPRING_KEY: &str = "bench-symmetric-key-0123456789";
const SECRETS: usize = 10;

/// The documents both servers serve: shared defaults, the application's, its profile's.
pub(crate) fn write_documents(repo: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo)?;
    let properties = |prefix: &str, count: usize| -> String {
        (0..count)
            .map(|i| format!("{prefix}.key-{i}: value-{i}-of-{prefix}\n"))
            .collect()
    };
    std::fs::write(repo.join("application.yml"), properties("shared", 20))?;
    std::fs::write(repo.join("bench.yml"), properties("bench", 50))?;
    std::fs::write(repo.join("bench-prod.yml"), properties("prod", 20))?;
    Ok(())
}

async fn config_servers(
    args: &JavaArgs,
    root: &Path,
    dir: &Path,
    client: &reqwest::Client,
) -> anyhow::Result<String> {
    let sides = [
        ConfigServer::Ours,
        ConfigServer::SpringNative,
        ConfigServer::SpringGit,
    ];
    let mut figures: Vec<Vec<ConfigFigures>> = vec![Vec::new(); sides.len()];
    for round in 0..args.load_rounds {
        for i in turns(round, sides.len()) {
            let side = sides[i];
            let scratch = dir.join(format!("config-load-{round}-{i}"));
            let repo = scratch.join("repo");
            write_documents(&repo)?;
            if side == ConfigServer::SpringGit {
                crate::git_repo::init(&repo)?;
            }
            let port = free_port()?;
            let command = side.command(root, &args.xmx, port, &repo, &scratch);
            eprintln!("config load: {} (round {round})", side.name());
            let (server, _) = launch(command, port, "/bench/prod", &scratch).await?;
            figures[i].push(
                config_load(client, side, &server, &repo, args.load_time)
                    .await
                    .with_context(|| side.name())?,
            );
        }
    }
    let best = |runs: &[ConfigFigures]| -> ConfigFigures {
        let mut runs = runs.to_vec();
        runs.sort_by(|a, b| a.plain.per_second().total_cmp(&b.plain.per_second()));
        runs.pop().unwrap_or_default()
    };
    let bests: Vec<ConfigFigures> = figures.iter().map(|f| best(f)).collect();
    let mut report = format!(
        "Config servers through Spring Cloud Config's API (`GET /bench/prod`: 3 property sources, \
         90 properties), {} rounds A B A B, each over the same native directory, {CONCURRENCY} \
         clients for {:?} after a warm-up of 10 s; `/bench/secret` adds a document of {SECRETS} \
         `{{cipher}}` values, each server's own ciphertext. Spring Cloud Config Server: `java \
         -Xmx{}`, `encrypt.key` (symmetric), its native backend over the directory, and its git \
         backend over a local repository of the same files (`file:` URI, branch `main`, \
         `refresh-rate` 0 as shipped: it fetches the repository on every request); ours: \
         release binary, `--native-dir`, a secrets key.\n\n\
         | server | reads/s | p99 | reads/s with `{{cipher}}` | p99 | RSS after |\n\
         |---|---:|---:|---:|---:|---:|\n",
        args.load_rounds, args.load_time, args.xmx
    );
    for (side, f) in sides.iter().zip(&bests) {
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.2} ms | {:.0} | {:.2} ms | {:.0} MiB |",
            side.name(),
            f.plain.per_second(),
            f.plain.quantile(0.99).as_secs_f64() * 1000.0,
            f.cipher.per_second(),
            f.cipher.quantile(0.99).as_secs_f64() * 1000.0,
            f.rss_mib,
        );
    }
    let ours = &bests[0];
    for (side, spring) in sides.iter().zip(&bests).skip(1) {
        let _ = writeln!(
            report,
            "\n- against the {}: Environment reads {:.1}×, {:.1}× with `{{cipher}}` values; RSS 1/{:.0}.",
            side.name(),
            ours.plain.per_second() / spring.plain.per_second(),
            ours.cipher.per_second() / spring.cipher.per_second(),
            spring.rss_mib / ours.rss_mib,
        );
    }
    Ok(report)
}

async fn config_load(
    client: &reqwest::Client,
    side: ConfigServer,
    server: &Server,
    repo: &Path,
    time: Duration,
) -> anyhow::Result<ConfigFigures> {
    let url = server.url.as_str();
    // The secrets document, in this server's own ciphertext.
    let mut secrets = String::new();
    for i in 0..SECRETS {
        let response = client
            .post(format!("{url}/encrypt"))
            .header("content-type", "text/plain")
            .body(format!("secret-value-{i}"))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("POST /encrypt: {}", response.status());
        }
        let _ = writeln!(
            secrets,
            "secret.key-{i}: '{{cipher}}{}'",
            response.text().await?.trim()
        );
    }
    std::fs::write(repo.join("bench-secret.yml"), secrets)?;
    side.publish(repo, "secrets")?;
    // Ours reloads the directory on change; wait until the secrets are served, decrypted.
    let started = Instant::now();
    loop {
        let body = client
            .get(format!("{url}/bench/secret"))
            .send()
            .await?
            .text()
            .await?;
        if body.contains("secret-value-9") {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("/bench/secret never served the decrypted secrets: {body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reads(client, url, "/bench/prod", Duration::from_secs(10)).await?;
    let plain = reads(client, url, "/bench/prod", time).await?;
    let cipher = reads(client, url, "/bench/secret", time).await?;
    Ok(ConfigFigures {
        plain,
        cipher,
        rss_mib: server.rss_mib(),
    })
}

async fn reads(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    time: Duration,
) -> anyhow::Result<Measured> {
    let (client, target) = (client.clone(), Arc::<str>::from(format!("{url}{path}")));
    let measured = closed_loop(CONCURRENCY, time, u64::MAX, move |_, _| {
        let (client, target) = (client.clone(), Arc::clone(&target));
        async move {
            match client.get(&*target).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            }
        }
    })
    .await;
    if measured.errors > 0 {
        bail!("{} reads of {path} failed", measured.errors);
    }
    Ok(measured)
}
