//! `msakit-bench java`: the Java servers msakit replaces — Netflix Eureka's server and Spring
//! Cloud Config Server, plain Spring Boot apps built from `bench/java` with Maven — started
//! beside our release binaries, A B A B, and measured from outside the same way: time from the
//! process's start to its first answered request, resident memory then and after a settle
//! period, and the CPU time spent by then. Throughput and propagation against them are the rest
//! of issue 22.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::process::{Server, free_port};

/// Settings of a `java` run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct JavaArgs {
    /// Rounds of each pair, alternating which side starts first.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The JVMs' maximum heap.
    #[arg(long, default_value = "512m")]
    pub(crate) xmx: String,
    /// How long each server idles after its first answer before its memory is read again.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Which comparisons to run.
    #[arg(long, value_delimiter = ',', default_values = ["start", "load", "propagation", "config-propagation", "resilience"])]
    only: Vec<Part>,
    /// Rounds of each load comparison, the sides taking turns.
    #[arg(long, default_value_t = 2)]
    pub(crate) load_rounds: usize,
    /// Instances registered in the registry comparison, one comparison per size.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000])]
    pub(crate) instances: Vec<usize>,
    /// Register / cancel / kill cycles of the propagation comparison (ours, Eureka uncached).
    #[arg(long, default_value_t = 20)]
    cycles: usize,
    /// The same against Eureka with its 30 s response cache on (each cycle takes a minute).
    #[arg(long, default_value_t = 5)]
    cycles_cached: usize,
    /// How long each measured load phase runs.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) load_time: Duration,
}

/// One comparison of a `java` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// Start to first answer, memory and CPU of both servers.
    Start,
    /// The same load through the same API: registrations, heartbeats, fetches; Environment
    /// reads.
    Load,
    /// Time from a registry change until a Java Eureka client and an SDK watcher see it.
    Propagation,
    /// Time from a config change until a Spring config client (refreshed) and an SDK live
    /// config hold it.
    ConfigPropagation,
    /// Resilience4j under JMH against msakit-resilience under criterion.
    Resilience,
}

/// One side of a pair, started fresh for each measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Java,
}

/// A pair of servers doing the same job, and the request that shows each is serving.
struct Pair {
    job: &'static str,
    ours_binary: &'static str,
    java_app: &'static str,
    /// Path of the first request, answered 200 by both once they serve.
    probe: &'static str,
}

const PAIRS: [Pair; 2] = [
    Pair {
        job: "registry (Eureka API)",
        ours_binary: "msakit-registry",
        java_app: "eureka-server",
        probe: "/eureka/apps",
    },
    Pair {
        job: "config (Spring API)",
        ours_binary: "msakit-config-server",
        java_app: "config-server",
        probe: "/application/default",
    },
];

/// What one start of one server showed.
#[derive(Debug, Clone, Copy)]
struct Sample {
    first_answer: Duration,
    rss_first_mib: f64,
    rss_settled_mib: f64,
    cpu: Duration,
}

/// Runs the comparisons asked for, printing each part's report (Markdown) as it is done, so a
/// later part's failure loses nothing measured before it.
pub(crate) async fn java(args: &JavaArgs, dir: &Path) -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    if args.only.contains(&Part::Start) {
        println!(
            "### Start, memory and CPU\n\n{}",
            start(args, &root, dir).await?
        );
    }
    if args.only.contains(&Part::Load) {
        build_java_apps(&root)?;
        println!(
            "### The same load\n\n{}",
            crate::java_load::throughput(args, &root, dir).await?
        );
    }
    if args.only.contains(&Part::Propagation) {
        build_java_apps(&root)?;
        let report = crate::registry_propagation::propagation(
            &root,
            dir,
            &args.xmx,
            args.cycles,
            args.cycles_cached,
        )
        .await?;
        println!("### Propagation\n\n{report}");
    }
    if args.only.contains(&Part::ConfigPropagation) {
        build_java_apps(&root)?;
        build_interop_apps(&root)?;
        let report =
            crate::config_propagation::propagation(&root, dir, &args.xmx, args.cycles).await?;
        println!("### Config propagation\n\n{report}");
    }
    if args.only.contains(&Part::Resilience) {
        println!(
            "### Resilience4j and msakit-resilience\n\n{}",
            crate::resilience4j::resilience4j(&root, dir)?
        );
    }
    Ok(())
}

/// `mvn -B -q -DskipTests [selection] package` in `dir`; Maven's output goes with the bench's
/// progress (stderr), not into the report.
pub(crate) fn mvn_package(dir: &Path, selection: &[&str]) -> anyhow::Result<()> {
    let built = std::process::Command::new("mvn")
        .args(["-B", "-q", "-DskipTests"])
        .args(selection)
        .arg("package")
        .current_dir(dir)
        .stdout(std::io::stderr())
        .status()
        .context("running mvn (Maven must be installed)")?;
    if !built.success() {
        bail!("mvn package failed in {}", dir.display());
    }
    Ok(())
}

/// Builds the Java servers in `bench/java` (Maven); their directory.
fn build_java_apps(root: &Path) -> anyhow::Result<PathBuf> {
    let apps = root.join("bench/java");
    mvn_package(&apps, &[])?;
    Ok(apps)
}

/// Builds the Spring Cloud apps of `interop/spring-cloud` (Maven), the clients of the
/// propagation comparisons.
pub(crate) fn build_interop_apps(root: &Path) -> anyhow::Result<()> {
    mvn_package(&root.join("interop/spring-cloud"), &[])
}

/// Builds the Java apps, measures every pair's start and returns the report (Markdown).
async fn start(args: &JavaArgs, root: &Path, dir: &Path) -> anyhow::Result<String> {
    let apps = build_java_apps(root)?;
    let release = root.join("target/release");
    let mut report = format!(
        "Start to first answer, memory and CPU, {} rounds A B A B; JVMs: `java -Xmx{} -jar` \
         ({}), defaults otherwise; ours: release binaries, defaults.\n\n\
         | job | server | start → first answer (median) | RSS at first answer | RSS after {:?} | CPU by then |\n\
         |---|---|---|---|---|---|\n",
        args.rounds,
        args.xmx,
        java_version(),
        args.settle
    );
    let mut ratios = String::new();
    for pair in &PAIRS {
        let ours_binary = release.join(pair.ours_binary);
        if !ours_binary.exists() {
            bail!(
                "{} is missing: cargo build --release -p {}",
                ours_binary.display(),
                pair.ours_binary
            );
        }
        let jar = apps
            .join(pair.java_app)
            .join(format!("target/{}.jar", pair.java_app));
        let mut samples = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            let order = if round % 2 == 0 {
                [Side::Ours, Side::Java]
            } else {
                [Side::Java, Side::Ours]
            };
            for side in order {
                let scratch = dir.join(format!("{}-{round}-{side:?}", pair.java_app));
                std::fs::create_dir_all(&scratch)?;
                let port = free_port()?;
                let command = match side {
                    Side::Ours => ours_command(&ours_binary, port, &scratch),
                    Side::Java => java_command(pair, &jar, &args.xmx, port, &scratch),
                };
                let sample = measure(command, port, pair.probe, &scratch, args.settle)
                    .await
                    .with_context(|| format!("{side:?} {}", pair.job))?;
                match side {
                    Side::Ours => samples.0.push(sample),
                    Side::Java => samples.1.push(sample),
                }
            }
        }
        let (ours, theirs) = (median(&samples.0), median(&samples.1));
        for (name, s) in [(pair.ours_binary, ours), (pair.java_app, theirs)] {
            report.push_str(&format!(
                "| {} | {name} | {:.0} ms | {:.0} MiB | {:.0} MiB | {:.2} s |\n",
                pair.job,
                s.first_answer.as_secs_f64() * 1000.0,
                s.rss_first_mib,
                s.rss_settled_mib,
                s.cpu.as_secs_f64()
            ));
        }
        ratios.push_str(&format!(
            "- {}: start to first answer {:.3}× Java's (1/{:.0}); RSS after settling {:.3}× (1/{:.0}).\n",
            pair.job,
            ours.first_answer.as_secs_f64() / theirs.first_answer.as_secs_f64(),
            theirs.first_answer.as_secs_f64() / ours.first_answer.as_secs_f64(),
            ours.rss_settled_mib / theirs.rss_settled_mib,
            theirs.rss_settled_mib / ours.rss_settled_mib,
        ));
    }
    report.push('\n');
    report.push_str(&ratios);
    Ok(report)
}

pub(crate) fn ours_command(binary: &Path, port: u16, scratch: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(scratch.join("data"))
        .env("RUST_LOG", "warn");
    command
}

/// `java -Xmx<xmx> -jar <jar> --server.port=<port>`: a Spring Boot peer on `port`.
pub(crate) fn jvm(jar: &Path, xmx: &str, port: u16) -> Command {
    let mut command = Command::new("java");
    command
        .arg(format!("-Xmx{xmx}"))
        .arg("-jar")
        .arg(jar)
        .arg(format!("--server.port={port}"));
    command
}

/// Which side goes first in `round`: in turns, A B then B A, over `sides` sides.
pub(crate) fn turns(round: usize, sides: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sides).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

fn java_command(pair: &Pair, jar: &Path, xmx: &str, port: u16, scratch: &Path) -> Command {
    let mut command = jvm(jar, xmx, port);
    if pair.java_app == "config-server" {
        let repo = scratch.join("repo");
        let _ = std::fs::create_dir_all(&repo);
        command.arg(format!(
            "--spring.cloud.config.server.native.search-locations=file:{}/",
            repo.display()
        ));
    }
    command
}

/// Starts `command`, polls `probe` until it answers 200, reads the process's memory, lets it
/// settle and reads memory and CPU again; the process is killed at the end.
async fn measure(
    command: Command,
    port: u16,
    probe: &str,
    scratch: &Path,
    settle: Duration,
) -> anyhow::Result<Sample> {
    let (server, first_answer) = launch(command, port, probe, scratch).await?;
    let rss_first_mib = server.rss_mib();
    tokio::time::sleep(settle).await;
    Ok(Sample {
        first_answer,
        rss_first_mib,
        rss_settled_mib: server.rss_mib(),
        cpu: server.cpu(),
    })
}

/// Starts `command` (output into `scratch/server.log`) and polls `probe` until it answers 200:
/// the server, and how long that took.
pub(crate) async fn launch(
    mut command: Command,
    port: u16,
    probe: &str,
    scratch: &Path,
) -> anyhow::Result<(Server, Duration)> {
    let log = std::fs::File::create(scratch.join("server.log"))?;
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting the server")?;
    let pid = child.id().context("pid")?;
    let url = format!("http://127.0.0.1:{port}");
    let server = Server::new(child, pid, url.clone(), scratch);
    let client = reqwest::Client::new();
    loop {
        let answered = client
            .get(format!("{url}{probe}"))
            .header("accept", "application/json")
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            return Ok((server, started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!(
                "no answer in 180 s; see {}",
                scratch.join("server.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The sample with the median start time (of an odd count; the upper middle of an even one).
fn median(samples: &[Sample]) -> Sample {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.first_answer);
    sorted[sorted.len() / 2]
}

/// What `java -version` says of itself, first line.
pub(crate) fn java_version() -> String {
    std::process::Command::new("java")
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "java: unknown version".to_owned())
}
