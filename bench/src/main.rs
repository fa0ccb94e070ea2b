//! `msakit-bench`: our registry and config server side by side with etcd (`compare`) and with
//! the Java servers they replace (`java`), and our registry at a million instances (`scale`). Every load loop stops by itself (a count and a
//! time) and targets loopback only.

mod cluster;
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
mod compare;
mod config_propagation;
#[cfg(feature = "etcd")]
mod etcd;
mod events;
mod gateway;
mod git_repo;
mod java;
mod java_load;
mod load;
mod ours;
mod process;
mod registry_propagation;
mod resilience4j;
mod scale;
mod soak;
mod workload;
mod wrk;

use std::path::PathBuf;

use anyhow::bail;
use clap::{Parser, Subcommand};

/// msakit side by side with etcd and the Java servers it replaces, and at scale.
#[derive(Debug, Parser)]
#[command(name = "msakit-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// msakit's registry and config server against a single-node etcd, same workloads.
    Compare(compare::CompareArgs),
    /// Our servers beside the Java ones they replace (Eureka's server, Spring Cloud Config
    /// Server), built from bench/java with Maven: start to first answer, memory, CPU; and
    /// Resilience4j under JMH against msakit-resilience under criterion.
    Java(java::JavaArgs),
    /// The registry with a million instances.
    Scale(scale::ScaleArgs),
    /// Both servers under a steady mixed load for a bounded time: RSS, descriptors, errors.
    Soak(soak::SoakArgs),
    /// Config writes on one config server vs a three-node cluster (and etcd's, with `etcd`);
    /// registrations and heartbeats on one registry vs three.
    Cluster(cluster::ClusterArgs),
    /// Events end to end (outbox → transport → inbox) on Kafka and direct, against bare
    /// rdkafka on the same broker.
    Events(events::EventsArgs),
    /// One backend behind msakit-gateway, nginx and Spring Cloud Gateway (built from
    /// bench/java with Maven), and called directly: throughput, added latency, memory.
    Gateway(gateway::GatewayArgs),
    /// Our per-request cost from outside: `wrk` against four endpoints of the release binaries
    /// and against a bare axum handler answering the same bytes.
    Wrk(wrk::WrkArgs),
    /// (internal) the registry under test.
    #[command(hide = true)]
    ServeRegistry {
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// (internal) the config server under test.
    #[command(hide = true)]
    ServeConfig {
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// Where a served node listens, and its cluster when it is one.
#[derive(Debug, Clone, clap::Args)]
struct NodeArgs {
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    #[arg(long)]
    node_id: Option<u64>,
    #[arg(long, value_parser = msakit_raft::parse_peers)]
    peers: Option<std::collections::BTreeMap<u64, String>>,
    /// Log entries between snapshots (the servers' default when absent).
    #[arg(long)]
    snapshot_after: Option<u64>,
}

impl NodeArgs {
    fn cluster(&self) -> Option<msakit_raft::ClusterConfig> {
        let mut config =
            msakit_raft::ClusterConfig::overlay(None, self.node_id, self.peers.as_ref(), None)?;
        if let Some(entries) = self.snapshot_after {
            config.snapshot_after = entries;
        }
        Some(config)
    }
}

/// A scratch directory on the same disk as the repository (not a tmpfs, so fsyncs are real).
fn scratch() -> anyhow::Result<tempfile::TempDir> {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target)?;
    Ok(tempfile::Builder::new()
        .prefix("msakit-bench-")
        .tempdir_in(target)?)
}

async fn start_ours(dir: &std::path::Path) -> anyhow::Result<ours::Ours> {
    let registry = process::start_ours("registry", &dir.join("registry"), &[]).await?;
    let config = process::start_ours("config", &dir.join("config"), &[]).await?;
    Ok(ours::Ours::new(registry, config))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::ServeRegistry { data_dir, node } => {
            process::serve_registry(&data_dir, node.listen, node.cluster()).await
        }
        Command::ServeConfig { data_dir, node } => {
            process::serve_config(&data_dir, node.listen, node.cluster()).await
        }
        Command::Events(args) => events::run(args).await,
        Command::Gateway(args) => {
            let dir = scratch()?;
            println!("{}", gateway::gateway(&args, dir.path()).await?);
            Ok(())
        }
        Command::Cluster(args) => {
            let dir = scratch()?;
            let report = cluster::cluster(&args, dir.path()).await?;
            println!("{report}");
            if args.write != "-" {
                let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(&args.write);
                cluster::write_section(&path, &report)?;
                eprintln!("written into {}", path.display());
            }
            Ok(())
        }
        Command::Wrk(args) => {
            let dir = scratch()?;
            println!("{}", wrk::wrk(&args, dir.path()).await?);
            Ok(())
        }
        Command::Java(args) => {
            let dir = scratch()?;
            java::java(&args, dir.path()).await
        }
        Command::Scale(args) => {
            let dir = scratch()?;
            let ours = start_ours(dir.path()).await?;
            let report = scale::scale(&ours, &args).await?;
            println!("{report}");
            Ok(())
        }
        Command::Soak(args) => {
            let dir = scratch()?;
            let ours = start_ours(dir.path()).await?;
            let report = soak::soak(&ours, &args).await?;
            println!("{report}");
            Ok(())
        }
        Command::Compare(args) => {
            if !process::etcd_installed() {
                bail!(
                    "`etcd` is not on PATH. Install it (Debian: `apt-get install -y etcd-server`) and run again; nothing is installed silently."
                );
            }
            compare_with_etcd(&args).await
        }
    }
}

#[cfg(feature = "etcd")]
async fn compare_with_etcd(args: &compare::CompareArgs) -> anyhow::Result<()> {
    let dir = scratch()?;
    let ours = start_ours(dir.path()).await?;
    let etcd = etcd::Etcd::connect(etcd::start_etcd(&dir.path().join("etcd")).await?, 8).await?;
    let report = compare::compare(&ours, &etcd, args).await?;
    println!("{report}");
    if args.write != "-" {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(&args.write);
        anyhow::Context::with_context(compare::write_section(&path, &report), || {
            format!("writing {}", path.display())
        })?;
        eprintln!("written into {}", path.display());
    }
    Ok(())
}

#[cfg(not(feature = "etcd"))]
async fn compare_with_etcd(_: &compare::CompareArgs) -> anyhow::Result<()> {
    bail!(
        "this msakit-bench was built without its etcd client, which needs `protoc` to build \
         (Debian: `apt-get install -y protobuf-compiler`). Run \
         `cargo run --release -p msakit-bench --features etcd -- compare`."
    )
}
