//! Traces: every process records OpenTelemetry spans through `tracing` (the
//! `tracing-opentelemetry` layer) and exports them when the standard variables say where —
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) for OTLP over HTTP,
//! or `OTEL_TRACES_EXPORTER=zipkin` with `OTEL_EXPORTER_ZIPKIN_ENDPOINT` for Zipkin.
//! `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and
//! `OTEL_BSP_*` are read by the OpenTelemetry SDK itself; `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` turn export off. Off, no layer is installed: spans cost what a
//! `tracing` span costs, and nothing is exported. Incoming `traceparent` headers become the
//! parents of the server spans ([`trace_requests`]).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of msakit's request and call spans (debug level): recorded when traces are
/// exported, free otherwise.
pub const TRACE_TARGET: &str = "msakit::trace";

/// A server's `telemetry:` settings; the standard `OTEL_*` variables win over them.
///
/// ```yaml
/// telemetry: { otlp_endpoint: http://collector:4318, sample_ratio: 0.1 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP collector's base URL (`/v1/traces` is added). Default none.
    pub otlp_endpoint: Option<String>,
    /// Zipkin's span API (`http://zipkin:9411/api/v2/spans`). Default none.
    pub zipkin_endpoint: Option<String>,
    /// The share of new traces recorded (a caller's sampling decision is followed). Default
    /// all.
    pub sample_ratio: Option<f64>,
}

impl TelemetryConfig {
    /// The reason the settings cannot be used.
    pub fn check(&self) -> Result<(), String> {
        if self.otlp_endpoint.is_some() && self.zipkin_endpoint.is_some() {
            return Err("give otlp_endpoint or zipkin_endpoint, not both".into());
        }
        if self.sample_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err("sample_ratio is between 0 and 1".into());
        }
        Ok(())
    }
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceExport {
    /// Nowhere: no OpenTelemetry layer.
    Off,
    /// OTLP over HTTP (protobuf): to this base URL, or where the `OTEL_EXPORTER_OTLP_*`
    /// variables say.
    Otlp(Option<String>),
    /// Zipkin's v2 JSON API: at this URL, or `OTEL_EXPORTER_ZIPKIN_ENDPOINT` (default
    /// `http://127.0.0.1:9411/api/v2/spans`).
    Zipkin(Option<String>),
}

impl TraceExport {
    /// What the environment asks for, else what the file does.
    pub fn resolve(file: &TelemetryConfig) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Self::Off;
        }
        match var("OTEL_TRACES_EXPORTER").as_deref() {
            Some("none") => Self::Off,
            Some("zipkin") => Self::Zipkin(file.zipkin_endpoint.clone()),
            Some("otlp") => Self::Otlp(file.otlp_endpoint.clone()),
            _ if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() =>
            {
                Self::Otlp(None)
            }
            _ => match (&file.otlp_endpoint, &file.zipkin_endpoint) {
                (Some(base), _) => Self::Otlp(Some(base.clone())),
                (None, Some(url)) => Self::Zipkin(Some(url.clone())),
                (None, None) => Self::Off,
            },
        }
    }
}

/// The tracer provider while spans are exported; flushes and stops it on [`shutdown`]
/// (or drop).
///
/// [`shutdown`]: Telemetry::shutdown
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the exporter. Blocks (the exporters' HTTP clients are
    /// blocking ones): call it off the async runtime, or after it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Shutting down exports what is buffered first.
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the tracer provider for `export`, naming the process `service` (unless
/// `OTEL_SERVICE_NAME` names it); installs the W3C trace-context propagator.
pub(crate) fn provider(
    service: &str,
    export: &TraceExport,
    file: &TelemetryConfig,
) -> Result<Option<SdkTracerProvider>, String> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = || {
        let mut builder = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            builder = builder.with_service_name(service.to_owned());
        }
        builder.build()
    };
    let provider = match export {
        TraceExport::Off => return Ok(None),
        TraceExport::Otlp(base) => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
            if let Some(base) = base {
                use opentelemetry_otlp::WithExportConfig;
                builder =
                    builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
            }
            let exporter = builder.build().map_err(|e| e.to_string())?;
            sampled(SdkTracerProvider::builder(), file)
                .with_batch_exporter(exporter)
                .with_resource(resource())
                .build()
        }
        TraceExport::Zipkin(url) => {
            // Its blocking HTTP client cannot be made on an async runtime's thread.
            let (named, url) = (service.to_owned(), url.clone());
            let exporter =
                std::thread::spawn(move || crate::zipkin::ZipkinExporter::new(&named, url))
                    .join()
                    .map_err(|_| "the Zipkin exporter panicked while starting".to_owned())??;
            sampled(SdkTracerProvider::builder(), file)
                .with_batch_exporter(exporter)
                .with_resource(resource())
                .build()
        }
    };
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Some(provider))
}

/// The file's sample ratio, unless `OTEL_TRACES_SAMPLER` says otherwise (the SDK reads it).
fn sampled(
    builder: opentelemetry_sdk::trace::TracerProviderBuilder,
    file: &TelemetryConfig,
) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    use opentelemetry_sdk::trace::Sampler;
    match file.sample_ratio {
        Some(ratio) if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() => builder.with_sampler(
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
        ),
        _ => builder,
    }
}

/// The `tracing` layer that records spans as OpenTelemetry spans of `provider`.
pub(crate) fn layer<S>(
    provider: &SdkTracerProvider,
    service: &str,
) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()))
}

/// Telemetry that exports nothing (tests, tools).
pub(crate) fn off() -> Telemetry {
    Telemetry { provider: None }
}

pub(crate) fn on(provider: SdkTracerProvider) -> Telemetry {
    Telemetry {
        provider: Some(provider),
    }
}

/// `router` with [`trace_requests`] around it when traces are recorded now (the subscriber is
/// installed before servers start); without, nothing is added, so no request pays for the
/// middleware.
pub fn traced<S: Clone + Send + Sync + 'static>(router: axum::Router<S>) -> axum::Router<S> {
    if tracing::enabled!(target: TRACE_TARGET, tracing::Level::DEBUG) {
        router.layer(axum::middleware::from_fn(trace_requests))
    } else {
        router
    }
}

/// The W3C `traceparent` of the current span, when it is recorded as an OpenTelemetry span: what
/// a proxy sends on so the callee's span is the child of its own.
pub fn current_traceparent() -> Option<axum::http::HeaderValue> {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let otel = opentelemetry::trace::TraceContextExt::span(&context);
    let ids = otel.span_context();
    if !ids.is_valid() {
        return None;
    }
    axum::http::HeaderValue::from_str(&format!(
        "00-{}-{}-{:02x}",
        ids.trace_id(),
        ids.span_id(),
        ids.trace_flags().to_u8()
    ))
    .ok()
}

/// Middleware recording a server span per request, the child of the caller's `traceparent`:
/// use with `axum::middleware::from_fn(trace_requests)` (or [`traced`]). Named `METHOD route`
/// when the router matched a route template, else by the method alone (never by the raw path,
/// which would make one span name per URL).
pub async fn trace_requests(request: Request, next: Next) -> Response {
    if !tracing::enabled!(target: TRACE_TARGET, tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let span = tracing::debug_span!(
        target: TRACE_TARGET,
        "request",
        otel.name = %match &route {
            Some(route) => format!("{} {route}", request.method()),
            None => request.method().to_string(),
        },
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route.as_deref(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if span.is_disabled() {
        return next.run(request).await;
    }
    if request.headers().contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&opentelemetry_http::HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    // Integers as i64: tracing-opentelemetry records u64 fields as text.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
