//! `msakit-bench cluster`: durable config writes on one config server and on a three-node
//! cluster (Raft: acknowledged once two of the three have the write on disk) — and, built with
//! the `etcd` feature, on a three-member etcd cluster — all on this machine, measured in turn
//! (1, 3, etcd, 1, 3, etcd, …) with the same writers; then registrations and heartbeats on one
//! registry and on a three-node registry cluster (heartbeats sent to a follower).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::compare::median;
use crate::load::{Measured, closed_loop};
use crate::process::{Server, free_port, start_ours};

/// Settings of the run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Seconds per run.
    #[arg(long, default_value_t = 5)]
    pub(crate) seconds: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    pub(crate) writers: usize,
    /// Raft log entries between snapshots on the three-node clusters (the servers' default;
    /// a few hundred make every run keep snapshots while it writes, as a long-running cluster
    /// does now and then).
    #[arg(long, default_value_t = 5000)]
    pub(crate) snapshot_after: u64,
    /// Concurrent clients of the registry (each registering or heartbeating an instance of its
    /// own): instances start in bursts, a deployment at a time.
    #[arg(long, default_value_t = 64)]
    pub(crate) registrants: usize,
    /// Rounds (each measures every setup once).
    #[arg(long, default_value_t = 2)]
    pub(crate) rounds: u32,
    /// Where to write the table (a section between markers); `-` for stdout only.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub(crate) write: String,
}

/// Three nodes of `what` (`config` or `registry`) under `dir`; they, the leader's URL and a
/// follower's, once a leader is agreed.
async fn start_cluster(
    what: &str,
    dir: &Path,
    args: &ClusterArgs,
) -> anyhow::Result<(Vec<Server>, String, String)> {
    let ports = [free_port()?, free_port()?, free_port()?];
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}=127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let args = [
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--node-id".to_owned(),
            (i + 1).to_string(),
            "--peers".to_owned(),
            peers.clone(),
            "--snapshot-after".to_owned(),
            args.snapshot_after.to_string(),
        ];
        let data = dir.join(format!("{what}-node-{}", i + 1));
        nodes.push(start_ours(what, &data, &args).await?);
    }
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let health: serde_json::Value =
            match http.get(format!("{}/health", nodes[0].url)).send().await {
                Ok(response) => response.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
        if let Some(leader) = health["cluster"]["leader_addr"].as_str() {
            let leader = format!("http://{leader}");
            let follower = nodes
                .iter()
                .map(|n| n.url.clone())
                .find(|url| *url != leader)
                .context("a follower")?;
            return Ok((nodes, leader, follower));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the three {what} nodes elected no leader in 30 s")
}

/// `registrants` clients for `seconds`, each re-registering an instance of its own with changed
/// metadata (`heartbeat`: heartbeating it instead, once registered).
async fn registry_load(url: &str, args: &ClusterArgs, heartbeat: bool) -> Measured {
    let http = reqwest::Client::new();
    for worker in 0..args.registrants {
        let _ = http
            .put(format!("{url}/v1/services/bench/instances/w{worker}"))
            .json(&serde_json::json!({"host": "127.0.0.1", "port": 9000, "lease_ttl_ms": 300_000}))
            .send()
            .await;
    }
    let base = url.to_owned();
    closed_loop(
        args.registrants,
        Duration::from_secs(args.seconds),
        u64::MAX,
        move |worker, i| {
            let http = http.clone();
            let instance = format!("{base}/v1/services/bench/instances/w{worker}");
            async move {
                let request = if heartbeat {
                    http.put(format!("{instance}/heartbeat"))
                } else {
                    http.put(instance).json(&serde_json::json!({
                        "host": "127.0.0.1", "port": 9000, "lease_ttl_ms": 300_000,
                        "metadata": {"n": i.to_string()}
                    }))
                };
                request.send().await.is_ok_and(|r| r.status().is_success())
            }
        },
    )
    .await
}

/// `writers` writers, each rewriting a document of its own, for `seconds`.
async fn our_writes(url: &str, args: &ClusterArgs) -> Measured {
    let http = reqwest::Client::new();
    let base = url.to_owned();
    closed_loop(
        args.writers,
        Duration::from_secs(args.seconds),
        u64::MAX,
        move |worker, i| {
            let (http, url) = (
                http.clone(),
                format!("{base}/v1/config/app-{worker}/default/main"),
            );
            async move {
                http.put(url)
                    .header("content-type", "application/yaml")
                    .body(format!("key: {i}\n"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        },
    )
    .await
}

/// Runs the comparison; the Markdown table.
pub(crate) async fn cluster(args: &ClusterArgs, dir: &Path) -> anyhow::Result<String> {
    let single = start_ours("config", &dir.join("single"), &[]).await?;
    let (_nodes, leader, _) = start_cluster("config", dir, args).await?;
    #[cfg(feature = "etcd")]
    let etcd = crate::etcd::EtcdCluster::start(&dir.join("etcd")).await?;
    let mut setups: Vec<(String, Vec<Measured>)> = vec![
        ("1 node".to_owned(), Vec::new()),
        ("3 nodes (Raft)".to_owned(), Vec::new()),
    ];
    #[cfg(feature = "etcd")]
    setups.push(("etcd, 3 members".to_owned(), Vec::new()));
    for _ in 0..args.rounds {
        setups[0].1.push(our_writes(&single.url, args).await);
        setups[1].1.push(our_writes(&leader, args).await);
        #[cfg(feature = "etcd")]
        setups[2].1.push(
            etcd.writes(args.writers, Duration::from_secs(args.seconds))
                .await,
        );
    }
    // The registry: one node, three.
    let registry = start_ours("registry", &dir.join("registry-single"), &[]).await?;
    let (_registry_nodes, registry_leader, registry_follower) =
        start_cluster("registry", dir, args).await?;
    let mut registry_runs: [Vec<Measured>; 4] = Default::default();
    for _ in 0..args.rounds {
        registry_runs[0].push(registry_load(&registry.url, args, false).await);
        registry_runs[1].push(registry_load(&registry_leader, args, false).await);
        registry_runs[2].push(registry_load(&registry.url, args, true).await);
        registry_runs[3].push(registry_load(&registry_follower, args, true).await);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Command: `cargo run --release -p msakit-bench{} -- cluster --seconds {} --writers {} --rounds {} \
         --snapshot-after {} --registrants {}` ({} writers rewriting a document each, fsync'd; medians of {} runs per \
         setup, setups in turn; the clusters keep a snapshot every {} log entries; loopback, every \
         process on this machine).\n",
        if cfg!(feature = "etcd") {
            " --features etcd"
        } else {
            ""
        },
        args.seconds,
        args.writers,
        args.rounds,
        args.snapshot_after,
        args.registrants,
        args.writers,
        args.rounds,
        args.snapshot_after
    );
    let _ = writeln!(
        out,
        "| setup | writes/s | p50 | p99 | vs 1 node |\n|---|---:|---:|---:|---:|"
    );
    let base = median(&setups[0].1, Measured::per_second);
    for (name, runs) in &setups {
        let rate = median(runs, Measured::per_second);
        let errors: u64 = runs.iter().map(|m| m.errors).sum();
        let _ = writeln!(
            out,
            "| {name} | {rate:.0}{} | {:.2} ms | {:.2} ms | {:.2}× |",
            if errors > 0 {
                format!(" ({errors} failed)")
            } else {
                String::new()
            },
            median(runs, |m| m.quantile(0.5).as_secs_f64() * 1e3),
            median(runs, |m| m.quantile(0.99).as_secs_f64() * 1e3),
            rate / base.max(1e-9)
        );
    }
    let _ = writeln!(
        out,
        "\nThe registry, {} clients (each re-registering an instance of its own with changed \
         metadata — a change, so a Raft entry in the cluster —, or heartbeating it; a single node \
         writes registrations behind, a cluster acknowledges them once a quorum has them on \
         disk; heartbeats are never entries, and in the cluster they go to a follower, which \
         hands them to the leader in batches; registrations arriving together share an entry):\n",
        args.registrants
    );
    let _ = writeln!(
        out,
        "| registry | registrations/s | p50 | p99 | heartbeats/s | p50 | p99 |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for (name, writes, beats) in [
        ("1 node", &registry_runs[0], &registry_runs[2]),
        (
            "3 nodes (Raft; heartbeats to a follower)",
            &registry_runs[1],
            &registry_runs[3],
        ),
    ] {
        let ms = |runs: &Vec<Measured>, q: f64| median(runs, |m| m.quantile(q).as_secs_f64() * 1e3);
        let errors: u64 = writes.iter().chain(beats.iter()).map(|m| m.errors).sum();
        let _ = writeln!(
            out,
            "| {name}{} | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.2} ms |",
            if errors > 0 {
                format!(" ({errors} failed)")
            } else {
                String::new()
            },
            median(writes, Measured::per_second),
            ms(writes, 0.5),
            ms(writes, 0.99),
            median(beats, Measured::per_second),
            ms(beats, 0.5),
            ms(beats, 0.99),
        );
    }
    Ok(out)
}

/// Replaces the cluster section of `path` (appending it if absent).
pub(crate) fn write_section(path: &PathBuf, table: &str) -> anyhow::Result<()> {
    crate::compare::replace_section(
        path,
        "cluster",
        "Config writes: one node, three, and etcd's three",
        table,
    )
    .with_context(|| format!("writing {}", path.display()))
}
