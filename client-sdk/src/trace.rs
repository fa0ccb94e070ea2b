//! The SDK's spans: one per attempt of a call (service, instance, attempt number, breaker
//! state, outcome), one per registry lookup and one per config fetch, all debug-level under
//! target `msakit::trace`, so they cost a disabled span's check unless a trace layer (server
//! kit's, when traces are exported) wants them. When one does, the attempt's `traceparent` is
//! its span's, so the callee's server span is that attempt's child.

use reqwest::header::HeaderValue;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of msakit's spans (the servers use the same).
pub(crate) const TARGET: &str = "msakit::trace";

/// The W3C `traceparent` of `span`, when it is recorded as an OpenTelemetry span.
pub(crate) fn traceparent_of(span: &tracing::Span) -> Option<HeaderValue> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let otel = opentelemetry::trace::TraceContextExt::span(&context);
    let ids = otel.span_context();
    if !ids.is_valid() {
        return None;
    }
    HeaderValue::from_str(&format!(
        "00-{}-{}-{:02x}",
        ids.trace_id(),
        ids.span_id(),
        ids.trace_flags().to_u8()
    ))
    .ok()
}

/// Makes `span` the child of the caller's span named by an incoming `traceparent` (trace and
/// span ids), unless a recorded span of the caller's own is current (then that is the parent).
pub(crate) fn adopt_remote_parent(
    span: &tracing::Span,
    trace: Option<u128>,
    parent: Option<u64>,
    flags: opentelemetry::trace::TraceFlags,
) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId, TraceState};
    let (Some(trace), Some(parent)) = (trace, parent) else {
        return;
    };
    if span.is_disabled() {
        return;
    }
    let current = tracing::Span::current().context();
    if current.span().span_context().is_valid() {
        return;
    }
    let remote = SpanContext::new(
        TraceId::from_bytes(trace.to_be_bytes()),
        SpanId::from_bytes(parent.to_be_bytes()),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// Adds `span`'s `traceparent` to a request, when it has one.
pub(crate) fn propagate(
    span: &tracing::Span,
    request: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    match traceparent_of(span) {
        Some(value) => request.header("traceparent", value),
        None => request,
    }
}
