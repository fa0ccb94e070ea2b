//! `msakit-gateway`: parse configuration, set up logging, serve until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use msakit_gateway::{Cli, run, shutdown_signal};

/// A proxy allocates per request (headers, bodies' frames, futures); mimalloc's per-thread
/// free lists cost a fraction of glibc's arenas here (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.resolve().context("configuration")?;
    let telemetry =
        msakit_server_kit::init_logging(cli.serve.log_format, "msakit-gateway", &config.telemetry);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.admin_listen))?;
    run(listener, admin, config, shutdown_signal()).await?;
    // The last spans are exported before the process ends (a blocking flush).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(())
}
