//! `cargo run --release -p msakit-demo`: msakit's main job. A registry, a config server, a
//! gateway, two order, two payment and one delivery instances — each its own OS process with
//! its own database — under steady traffic, through a scripted fault scenario, ending with a
//! report of what was expected, what was measured, and the invariants across the databases.
//!
//! The same binary is every process: with no subcommand it orchestrates; `registry`,
//! `config-server`, `gateway` and `service <kind>` are the children it starts.

mod choreography;
mod cluster;
mod ha;
mod ledger;
mod report;
mod scenario;
mod servers;
mod services;
mod trace_check;
mod traffic;
mod view;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A gateway, order, payment and delivery services, a registry and a config server, each its
/// own process, through a scripted fault scenario.
#[derive(Debug, Parser)]
#[command(name = "msakit-demo", version)]
struct Cli {
    /// Short phases (about 40 s in all).
    #[arg(long)]
    quick: bool,
    /// Leave the cluster up at the end and print its URLs; Ctrl-C stops it.
    #[arg(long)]
    keep_running: bool,
    /// Plain log lines instead of a redrawn view.
    #[arg(long)]
    no_tui: bool,
    /// High availability: three registry nodes and three config-server nodes (Raft), and the
    /// scenario kills both leaders.
    #[arg(long)]
    ha: bool,
    /// The choreographed saga instead (services react to each other's events; msakit-events):
    /// SIGKILLs the relay after a commit and a consumer mid-handler, then checks every order.
    #[arg(long)]
    choreography: bool,
    /// With `--choreography`: events over Kafka at HOST:PORT instead of the direct transport.
    #[arg(long, value_name = "HOST:PORT", requires = "choreography")]
    kafka: Option<String>,
    /// With `--kafka`: the broker's directory as given to `events/kafka/start DIR PORT`; the
    /// scenario then also stops the broker for 10 s and starts it again.
    #[arg(long, value_name = "DIR", requires = "kafka")]
    kafka_dir: Option<PathBuf>,
    /// With `--choreography`: instead of the phases, 20 random SIGKILLs of the services while
    /// this many events flow, then the same checks of every order.
    #[arg(long, value_name = "EVENTS", requires = "choreography")]
    crash_test: Option<u64>,
    /// A Zipkin server (`http://host:9411`): every process exports its spans there, and the
    /// scenario reads one order's trace back and prints where to look at it.
    #[arg(long, value_name = "URL")]
    zipkin: Option<String>,
    #[command(subcommand)]
    child: Option<Child>,
}

/// The processes the orchestrator starts (not for direct use).
#[derive(Debug, Subcommand)]
enum Child {
    /// The registry.
    #[command(hide = true)]
    Registry {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        cluster: servers::ClusterArgs,
    },
    /// The config server.
    #[command(hide = true)]
    ConfigServer {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        cluster: servers::ClusterArgs,
    },
    /// The gateway (msakit-gateway), its routes followed in the config server.
    #[command(hide = true)]
    Gateway(servers::GatewayArgs),
    /// One instance of one service.
    #[command(hide = true)]
    Service(services::ServiceArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Some(child) = cli.child else {
        if cli.choreography {
            let options = choreography::scenario::Options {
                quick: cli.quick,
                kafka: cli.kafka,
                kafka_dir: cli.kafka_dir,
                crash_test: cli.crash_test,
            };
            let held = choreography::scenario::run(options).await?;
            std::process::exit(if held { 0 } else { 1 });
        }
        let tui = !cli.no_tui && std::io::IsTerminal::is_terminal(&std::io::stdout());
        let options = scenario::Options {
            quick: cli.quick,
            keep_running: cli.keep_running,
            tui,
            ha: cli.ha,
            zipkin: cli.zipkin,
        };
        let held = scenario::run(options).await?;
        std::process::exit(if held { 0 } else { 1 });
    };
    // Children log JSON to stderr, which the orchestrator sends to a file per process (their
    // stdout is the READY line), and export traces when the OTEL_* variables say where.
    let service = match &child {
        Child::Registry { .. } => "msakit-registry",
        Child::ConfigServer { .. } => "msakit-config-server",
        Child::Gateway(_) => "msakit-gateway",
        Child::Service(args) => args.kind.name(),
    };
    let telemetry = msakit_server_kit::init_logging_to(
        msakit_server_kit::LogFormat::Json,
        service,
        msakit_server_kit::LogSink::Stderr,
        &msakit_server_kit::TelemetryConfig::default(),
    );
    services::leave_with_parent();
    let result = match child {
        Child::Registry {
            port,
            data_dir,
            cluster,
        } => servers::registry(port, data_dir, cluster).await,
        Child::ConfigServer {
            port,
            data_dir,
            cluster,
        } => servers::config_server(port, data_dir, cluster).await,
        Child::Gateway(args) => servers::gateway(args).await,
        Child::Service(args) => services::run(args).await,
    };
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}
