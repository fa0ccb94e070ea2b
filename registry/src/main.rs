//! `msakit-registry`: parse configuration, set up logging, serve until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use msakit_registry::{Cli, run, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.resolve().context("configuration")?;
    let telemetry =
        msakit_server_kit::init_logging(cli.serve.log_format, "msakit-registry", &config.telemetry);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    run(listener, config, shutdown_signal()).await?;
    // The last spans are exported before the process ends (a blocking flush).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(())
}
