//! `msakit-demo registry`, `msakit-demo config-server` and `msakit-demo gateway`: the real
//! servers (their libraries' `run`, as their binaries run them), tuned for a demo that must show
//! evictions within seconds, as child processes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// What makes a server one node of a cluster (`msakit-demo --ha`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterArgs {
    /// This node's id.
    #[arg(long, requires = "peers")]
    node_id: Option<u64>,
    /// Every node: `1=127.0.0.1:port,2=…`.
    #[arg(long, value_parser = msakit_raft::parse_peers)]
    peers: Option<std::collections::BTreeMap<u64, String>>,
}

impl ClusterArgs {
    fn config(&self) -> Option<msakit_raft::ClusterConfig> {
        msakit_raft::ClusterConfig::overlay(None, self.node_id, self.peers.as_ref(), None)
    }
}

/// Runs the registry on `port` (0: any): 1 s minimum lease, sweeps every 100 ms, and no
/// self-preservation (a demo of 5 instances losing one would otherwise trip it). A cluster
/// node keeps its log in `data_dir`.
pub(crate) async fn registry(
    port: u16,
    data_dir: Option<PathBuf>,
    cluster: ClusterArgs,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .context("binding the registry")?;
    let mut config = msakit_registry::RegistryConfig {
        listen: listener.local_addr()?,
        sweep_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(1),
        data_dir,
        cluster: cluster.config(),
        ..Default::default()
    };
    config.lease.min_ttl = Duration::from_secs(1);
    config.self_preservation.enabled = false;
    println!("READY {}", listener.local_addr()?.port());
    msakit_registry::run(listener, config, msakit_registry::shutdown_signal()).await?;
    Ok(())
}

/// Runs the config server on `port` (0: any), keeping its data in `data_dir`.
pub(crate) async fn config_server(
    port: u16,
    data_dir: PathBuf,
    cluster: ClusterArgs,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .context("binding the config server")?;
    let config = msakit_config_server::ConfigServerConfig {
        listen: listener.local_addr()?,
        data_dir,
        shutdown_grace: Duration::from_secs(1),
        cluster: cluster.config(),
        ..Default::default()
    };
    println!("READY {}", listener.local_addr()?.port());
    msakit_config_server::run(listener, config, msakit_config_server::shutdown_signal()).await?;
    Ok(())
}

/// `msakit-demo gateway`: msakit-gateway with its routes in the config server.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GatewayArgs {
    /// Port for clients (0: any).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Port of the admin API.
    #[arg(long)]
    admin_port: u16,
    /// The registry's base URLs (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    registry: Vec<String>,
    /// The config server's base URLs (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    config: Vec<String>,
    /// Where the last good routes are kept.
    #[arg(long)]
    data_dir: PathBuf,
}

/// Runs the gateway: routes from the config server's `gateway` application (profile `demo`),
/// followed live.
pub(crate) async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .context("binding the gateway")?;
    let admin = tokio::net::TcpListener::bind(("127.0.0.1", args.admin_port))
        .await
        .context("binding the gateway's admin API")?;
    let config = msakit_gateway::GatewayConfig {
        listen: listener.local_addr()?,
        admin_listen: admin.local_addr()?,
        registry: args.registry,
        config_server: args.config,
        routes_from_config: Some(msakit_gateway::RoutesFromConfig {
            application: "gateway".into(),
            profiles: vec!["demo".into()],
            label: None,
        }),
        data_dir: Some(args.data_dir),
        shutdown_grace: Duration::from_secs(1),
        ..Default::default()
    };
    println!("READY {}", listener.local_addr()?.port());
    msakit_gateway::run(listener, admin, config, msakit_gateway::shutdown_signal()).await?;
    Ok(())
}
