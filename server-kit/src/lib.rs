//! The plumbing every msakit server shares, so each server crate holds only its own domain:
//! the JSON error type, token parsing, `wait=` parsing, config files, graceful serving, logging
//! setup, the request-latency middleware and the version stamped on internal records.

mod config_file;
mod error;
mod format_version;
mod limits;
mod logging;
mod serve;
mod tls;
mod tokens;
mod wait;

pub use config_file::{ConfigFileError, read_yaml_file};
pub use error::ApiError;
pub use format_version::FormatVersion;
pub use limits::{Limit, Rejections, WatcherSlot, WatchersPerClient};
pub use logging::{LogFormat, init_logging};
pub use serve::{
    ConnectionLimits, RequestObserver, ServeOptions, serve_until, shutdown_signal, time_requests,
};
pub use tls::{TlsConfig, TlsError};
pub use tokens::{constant_time_eq, find_token, presented_token};
pub use wait::{
    WAIT_PATTERN, blocking_query, check_index, check_int64, parse_wait, wait_for_change,
};

/// Buckets of the servers' latency histograms, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Drains `handle`'s histogram samples into their buckets every 5 s until `stop` is cancelled.
/// The exporter otherwise keeps every sample until the next `/metrics` render, so a server that
/// nobody scrapes would grow without bound (found by a soak run under heaptrack).
pub fn spawn_metrics_upkeep(
    handle: metrics_exporter_prometheus::PrometheusHandle,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(5));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => handle.run_upkeep(),
                _ = stop.cancelled() => return,
            }
        }
    })
}

/// A Prometheus recorder of the server's own (not installed globally, so servers in one process
/// stay apart), with [`LATENCY_BUCKETS`] for every metric ending in `_seconds`.
pub fn prometheus_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .expect("the bucket list is not empty")
        .build_recorder()
}
