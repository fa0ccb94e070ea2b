//! The plumbing every msakit server shares, so each server crate holds only its own domain:
//! the JSON error type, token parsing, `wait=` parsing, config files, graceful serving, logging
//! setup, the request-latency middleware and the version stamped on internal records.

mod config_file;
mod error;
mod flags;
mod format_version;
mod kept_answers;
mod limits;
mod logging;
mod metrics;
mod serve;
mod sse;
mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod tokens;
mod wait;
mod zipkin;

pub use config_file::{ConfigFileError, read_yaml_file};
pub use error::ApiError;
pub use flags::{EnvNames, ServeFlags, flag_variables};
pub use format_version::FormatVersion;
pub use kept_answers::{KeptAnswers, KeptFor, Rendered};
pub use limits::{Limit, Rejections, WatcherSlot, WatchersPerClient};
pub use logging::{LogFormat, LogSink, init_logging, init_logging_to};
pub use metrics::{
    LATENCY_BUCKETS, MetricNames, ServerMetrics, WatcherGauge, prometheus_recorder,
    spawn_metrics_upkeep,
};
pub use serve::{
    ConnectionLimits, RequestObserver, ServeOptions, serve_until, shutdown_signal, time_requests,
};
pub use sse::{KEEP_ALIVE, LiveFrames, event_stream, sse_frame};
pub use telemetry::{
    TRACE_TARGET, Telemetry, TelemetryConfig, TraceExport, current_traceparent, trace_requests,
    traced,
};
pub use tls::{TlsConfig, TlsError};
pub use tokens::{constant_time_eq, find_token, presented_token};
pub use wait::{
    WAIT_PATTERN, blocking_query, check_index, check_int64, parse_wait, wait_for_change,
};
