//! `msakit-config-server`: parse configuration, set up logging, serve until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use msakit_config_server::config::LogFormat;
use msakit_config_server::{Cli, run, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Pretty => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let config = cli.resolve().context("configuration")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    run(listener, config, shutdown_signal()).await?;
    Ok(())
}
