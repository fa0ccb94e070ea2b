//! `msakit-bench scale --instances 1000000`: a million instances in 10,000 services on one
//! registry, their heartbeats sustained at a 30 s interval, and what that costs: RSS, CPU (and
//! what is left of the machine), full-fetch times, and watcher propagation under that load.

use std::time::{Duration, Instant};

use crate::load::{paced, quantile};
use crate::ours::Ours;
use crate::workload::{Side, Sizes};

/// How the scale run goes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ScaleArgs {
    /// Instances to register (in instances / 100 services).
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) instances: u64,
    /// The heartbeat interval each instance keeps.
    #[arg(long, default_value_t = 30)]
    pub(crate) interval_seconds: u64,
    /// How long heartbeats are sustained.
    #[arg(long, default_value_t = 60)]
    pub(crate) seconds: u64,
    /// Watchers of the propagation measured under load.
    #[arg(long, default_value_t = 100)]
    pub(crate) watchers: usize,
}

/// Runs the scale test against our registry; the Markdown report.
pub(crate) async fn scale(ours: &Ours, args: &ScaleArgs) -> anyhow::Result<String> {
    let services = (args.instances / 100).max(1);
    let sizes = Sizes {
        instances: args.instances,
        services,
        duration: Duration::from_secs(args.seconds),
        concurrency: 64,
        watchers: args.watchers,
        changes: 20,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let idle_rss = ours.registry.rss_mib();
    eprintln!(
        "registering {} instances in {services} services",
        args.instances
    );
    let cpu = ours.registry.cpu();
    let registered = ours.register(0, sizes).await;
    let register_cpu = ours.registry.cpu().saturating_sub(cpu);
    let full_rss = ours.registry.rss_mib();

    let fetch = |url: String| {
        let http = http.clone();
        async move {
            let started = Instant::now();
            let response = http
                .get(url)
                .header("accept", "application/json")
                .send()
                .await?;
            let bytes = response.error_for_status()?.bytes().await?;
            anyhow::Ok((started.elapsed(), bytes.len()))
        }
    };
    let (one_time, one_bytes) = fetch(format!("{}/v1/services/svc-0", ours.registry.url)).await?;
    let (all_time, all_bytes) = fetch(format!("{}/eureka/apps", ours.registry.url)).await?;
    let after_fetch_rss = ours.registry.rss_mib();

    let rate = args.instances as f64 / args.interval_seconds as f64;
    eprintln!(
        "heartbeats at {rate:.0}/s for {} s, with a propagation run in the middle",
        args.seconds
    );
    let (base, instances) = (ours.registry.url.clone(), args.instances);
    let heartbeat_http = http.clone();
    let cpu = ours.registry.cpu();
    let heartbeats = tokio::spawn(paced(64, rate, sizes.duration, move |_, i| {
        let n = i % instances;
        let url = format!(
            "{base}/v1/services/svc-{}/instances/r0-{n}/heartbeat",
            n % services
        );
        let http = heartbeat_http.clone();
        async move {
            http.put(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    }));
    tokio::time::sleep(sizes.duration / 3).await;
    let delays = ours.propagation(0, sizes).await?;
    let heartbeats = heartbeats.await?;
    let heartbeat_cpu = ours.registry.cpu().saturating_sub(cpu);
    let final_rss = ours.registry.rss_mib();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let used = heartbeat_cpu.as_secs_f64() / heartbeats.elapsed.as_secs_f64();

    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "Command: `cargo run --release -p msakit-bench -- scale --instances {} --interval-seconds {} --seconds {} --watchers {}`. \
         Registry and load generator share the machine ({cores} cores); loopback.\n",
        args.instances, args.interval_seconds, args.seconds, args.watchers
    );
    let _ = writeln!(out, "| measure | value | goal |\n|---|---:|---|");
    let _ = writeln!(
        out,
        "| registration of {} instances, 64 clients | {:.1} s ({:.0}/s, {} failed; registry CPU {:.1} s) | |",
        args.instances,
        registered.elapsed.as_secs_f64(),
        registered.per_second(),
        registered.errors,
        register_cpu.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| RSS idle / with every instance / after the full fetch / after the heartbeat run | {idle_rss:.0} / {full_rss:.0} / {after_fetch_rss:.0} / {final_rss:.0} MiB | ≤ 1,536 MiB |"
    );
    let _ = writeln!(
        out,
        "| full fetch, one service (`GET /v1/services/svc-0`, 100 instances) | {:.2} ms, {} KiB | |",
        one_time.as_secs_f64() * 1e3,
        one_bytes / 1024
    );
    let _ = writeln!(
        out,
        "| full fetch, whole registry (`GET /eureka/apps`, JSON) | {:.2} s, {} MiB | |",
        all_time.as_secs_f64(),
        all_bytes / (1024 * 1024)
    );
    let _ = writeln!(
        out,
        "| heartbeats: target {rate:.0}/s for {} s | {:.0}/s achieved, {} failed, p99 {:.1} ms | target sustained |",
        args.seconds,
        heartbeats.per_second(),
        heartbeats.errors,
        heartbeats.quantile(0.99).as_secs_f64() * 1e3
    );
    let _ = writeln!(
        out,
        "| registry CPU during heartbeats | {:.0}% of one core; {:.0}% of the machine's {cores} cores left | ≥ 30% of a core to spare |",
        used * 100.0,
        (cores - used) * 100.0 / cores
    );
    let _ = writeln!(
        out,
        "| propagation to {} watchers under that load, p50 / p99 | {:.1} / {:.1} ms | p99 ≤ 100 ms |",
        args.watchers,
        quantile(&delays, 0.5).as_secs_f64() * 1e3,
        quantile(&delays, 0.99).as_secs_f64() * 1e3
    );
    Ok(out)
}
