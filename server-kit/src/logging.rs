//! Structured logs and traces: `RUST_LOG` filters; pretty for people or one JSON object per
//! line; spans exported as OpenTelemetry traces when the `OTEL_*` variables say where (see
//! [`crate::telemetry`]).

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::telemetry::{self, Telemetry, TelemetryConfig, TraceExport};

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    #[default]
    Pretty,
    /// One JSON object per line, for machines.
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogSink {
    /// Standard output (the servers).
    #[default]
    Stdout,
    /// Standard error (processes whose standard output says something else).
    Stderr,
}

/// [`init_logging_to`] standard output.
pub fn init_logging(format: LogFormat, service: &str, telemetry: &TelemetryConfig) -> Telemetry {
    init_logging_to(format, service, LogSink::Stdout, telemetry)
}

/// Installs the global subscriber (`info` unless `RUST_LOG` says otherwise), exporting the
/// spans of `service` when the environment (or else the file's `telemetry:`) asks; keep the answer until the process ends (it
/// flushes the last spans when dropped or shut down).
pub fn init_logging_to(
    format: LogFormat,
    service: &str,
    sink: LogSink,
    file: &TelemetryConfig,
) -> Telemetry {
    let export = TraceExport::resolve(file);
    let provider = match telemetry::provider(service, &export, file) {
        Ok(provider) => provider,
        Err(e) => {
            eprintln!("traces will not be exported: {e}");
            None
        }
    };
    // Each layer filters for itself: logs by `RUST_LOG`; traces take the spans of `info` and
    // above plus msakit's own call and request spans (target `msakit::trace`, at debug so
    // that they cost nothing while no trace layer wants them).
    let logs = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let traces = provider.as_ref().map(|p| {
        telemetry::layer(p, service).with_filter(
            Targets::new()
                .with_default(Level::INFO)
                .with_target(crate::TRACE_TARGET, Level::DEBUG),
        )
    });
    let registry = tracing_subscriber::registry().with(traces);
    let writer = move || -> Box<dyn std::io::Write> {
        match sink {
            LogSink::Stdout => Box::new(std::io::stdout()),
            LogSink::Stderr => Box::new(std::io::stderr()),
        }
    };
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .with_filter(logs()),
            )
            .init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_filter(logs()),
            )
            .init(),
    }
    match provider {
        Some(provider) => {
            tracing::info!(?export, "exporting traces");
            telemetry::on(provider)
        }
        None => telemetry::off(),
    }
}
