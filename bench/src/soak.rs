//! `msakit-bench soak --minutes 10`: both servers under a steady mixed load — heartbeats,
//! lookups, registrations coming and going, config writes and reads, SSE watchers on both —
//! for a bounded time, sampling each server's RSS and open file descriptors, counting every
//! failed request. Flat memory and descriptors, and no errors, are the expectation.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::load::paced;
use crate::ours::Ours;
use crate::process::Server;

/// How long and how hard.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakArgs {
    /// Minutes to run (the loops stop by themselves).
    #[arg(long, default_value_t = 10)]
    pub(crate) minutes: u64,
    /// Seconds to run instead (for short checks).
    #[arg(long)]
    pub(crate) seconds: Option<u64>,
    /// Registered instances, each heartbeating every 10 s.
    #[arg(long, default_value_t = 2000)]
    pub(crate) instances: u64,
    /// SSE watchers on each server.
    #[arg(long, default_value_t = 50)]
    pub(crate) watchers: usize,
}

/// One sample of a server.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_mib: f64,
    fds: usize,
    /// Size of its data files: what a page cache of that store can come to hold.
    data_mib: f64,
}

fn sample(server: &Server) -> Sample {
    Sample {
        rss_mib: server.rss_mib(),
        fds: server.open_fds(),
        data_mib: server.data_mib(),
    }
}

/// Runs the soak; the Markdown report.
pub(crate) async fn soak(ours: &Ours, args: &SoakArgs) -> anyhow::Result<String> {
    let duration = Duration::from_secs(args.seconds.unwrap_or(args.minutes * 60));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let (registry, config) = (ours.registry.url.clone(), ours.config.url.clone());
    for i in 0..args.instances {
        let response = http
            .put(format!(
                "{registry}/v1/services/svc-{}/instances/i-{i}",
                i % 100
            ))
            .json(&serde_json::json!({"host": "10.1.0.1", "port": 8080, "lease_ttl_ms": 30_000}))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "registration failed");
    }
    let response = http
        .put(format!("{config}/v1/config/soak/default/main"))
        .header("content-type", "application/yaml")
        .body("n: 0\n")
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "config write failed");

    // Watchers: SSE streams kept open for the whole run, counting what they receive.
    let events = Arc::new(AtomicU64::new(0));
    let watch_ends = Arc::new(AtomicU64::new(0));
    let streaming = reqwest::Client::new();
    let mut watchers = Vec::new();
    for n in 0..args.watchers * 2 {
        let url = if n % 2 == 0 {
            format!("{registry}/v1/watch?service=churn")
        } else {
            format!("{config}/v1/watch/soak/default/main")
        };
        let (client, events, ends) = (streaming.clone(), events.clone(), watch_ends.clone());
        watchers.push(tokio::spawn(async move {
            let Ok(response) = client.get(url).send().await else {
                ends.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut body = response.bytes_stream();
            let deadline = tokio::time::Instant::now() + duration + Duration::from_secs(5);
            while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, body.next()).await {
                if chunk.is_err() {
                    break;
                }
                events.fetch_add(1, Ordering::Relaxed);
            }
            if tokio::time::Instant::now() < deadline {
                ends.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = (sample(&ours.registry), sample(&ours.config));
    let started = Instant::now();

    let instances = args.instances;
    let load = |rate: f64, op: &'static str| {
        let (http, registry, config) = (http.clone(), registry.clone(), config.clone());
        tokio::spawn(paced(8, rate, duration, move |_, i| {
            let (http, registry, config) = (http.clone(), registry.clone(), config.clone());
            async move {
                let request = match op {
                    "heartbeat" => {
                        let n = i % instances;
                        http.put(format!(
                            "{registry}/v1/services/svc-{}/instances/i-{n}/heartbeat",
                            n % 100
                        ))
                    }
                    "lookup" => http.get(format!("{registry}/v1/services/svc-{}", i % 100)),
                    "churn" => {
                        let url = format!("{registry}/v1/services/churn/instances/c-{}", i % 20);
                        if i % 2 == 0 {
                            http.put(url)
                                .json(&serde_json::json!({"host": "10.2.0.1", "port": 80}))
                        } else {
                            http.delete(url)
                        }
                    }
                    "config_write" => http
                        .put(format!("{config}/v1/config/soak/default/main"))
                        .header("content-type", "application/yaml")
                        .body(format!("n: {i}\n")),
                    _ => http.get(format!("{config}/v1/resolve/soak/default/main")),
                };
                match request.send().await {
                    // A churn delete of an instance already gone is fine.
                    Ok(r) => r.status().is_success() || (op == "churn" && r.status() == 404),
                    Err(_) => false,
                }
            }
        }))
    };
    let runs = [
        ("heartbeats", load(instances as f64 / 10.0, "heartbeat")),
        ("lookups", load(200.0, "lookup")),
        ("registrations and deregistrations", load(10.0, "churn")),
        ("config writes (fsync'd)", load(5.0, "config_write")),
        ("config reads", load(200.0, "config_read")),
    ];
    // Sample both servers every 30 s while the load runs.
    let mut samples = vec![(Duration::ZERO, start.0, start.1)];
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(30).min(duration.saturating_sub(started.elapsed())))
            .await;
        samples.push((
            started.elapsed(),
            sample(&ours.registry),
            sample(&ours.config),
        ));
    }
    let mut totals = Vec::new();
    for (name, run) in runs {
        let measured = run.await?;
        totals.push((name, measured));
    }
    let end = (sample(&ours.registry), sample(&ours.config));
    for watcher in watchers {
        let _ = watcher.await;
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Command: `cargo run --release -p msakit-bench -- soak --minutes {} --instances {} --watchers {}` \
         ({} s). Both servers as child processes, loopback, the load generator on the same machine.\n",
        args.minutes,
        args.instances,
        args.watchers,
        duration.as_secs()
    );
    let _ = writeln!(
        out,
        "| load | requests | failed | rate | p99 |\n|---|---:|---:|---:|---:|"
    );
    for (name, m) in &totals {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.0}/s | {:.1} ms |",
            m.ops,
            m.errors,
            m.per_second(),
            m.quantile(0.99).as_secs_f64() * 1e3
        );
    }
    let _ = writeln!(
        out,
        "| SSE watchers ({} on each server) | {} chunks received | {} streams ended early | | |",
        args.watchers,
        events.load(Ordering::Relaxed),
        watch_ends.load(Ordering::Relaxed)
    );
    let max = |pick: fn(&(Duration, Sample, Sample)) -> Sample| {
        samples
            .iter()
            .map(pick)
            .fold((0.0f64, 0usize), |(r, f), s| {
                (r.max(s.rss_mib), f.max(s.fds))
            })
    };
    let (registry_max, config_max) = (max(|s| s.1), max(|s| s.2));
    // RSS at each quarter of the run: growth that slows to nothing is a plateau, not a leak.
    let quarters = |pick: fn(&(Duration, Sample, Sample)) -> Sample| {
        (0..=4)
            .map(|q| {
                let index = (samples.len().saturating_sub(1) * q) / 4;
                samples
                    .get(index)
                    .map_or("?".to_owned(), |s| format!("{:.1}", pick(s).rss_mib))
            })
            .collect::<Vec<_>>()
            .join(" → ")
    };
    let _ = writeln!(
        out,
        "\n| server | RSS start → end (max) | RSS at 0, ¼, ½, ¾, end (MiB) | data files start → end | open fds start → end (max) |\n|---|---:|---|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| registry | {:.0} → {:.0} MiB ({:.0}) | {} | {:.1} → {:.1} MiB | {} → {} ({}) |",
        start.0.rss_mib,
        end.0.rss_mib,
        registry_max.0,
        quarters(|s| s.1),
        start.0.data_mib,
        end.0.data_mib,
        start.0.fds,
        end.0.fds,
        registry_max.1
    );
    let _ = writeln!(
        out,
        "| config server | {:.0} → {:.0} MiB ({:.0}) | {} | {:.1} → {:.1} MiB | {} → {} ({}) |",
        start.1.rss_mib,
        end.1.rss_mib,
        config_max.0,
        quarters(|s| s.2),
        start.1.data_mib,
        end.1.data_mib,
        start.1.fds,
        end.1.fds,
        config_max.1
    );
    Ok(out)
}
