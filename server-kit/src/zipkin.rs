//! Spans to Zipkin's v2 JSON API (`POST /api/v2/spans`), each with its process's service name
//! as the local endpoint. Written here because `opentelemetry-zipkin` 0.31 (the last release on
//! our reqwest 0.12) sends no service name at all, so Zipkin shows every span as "unknown".
//! Runs on the OpenTelemetry SDK's batch thread, hence the blocking HTTP client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, Value, json};

/// Where spans go when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` does not say.
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9411/api/v2/spans";

/// A Zipkin v2 exporter.
#[derive(Debug)]
pub(crate) struct ZipkinExporter {
    http: reqwest::blocking::Client,
    endpoint: String,
    service: String,
}

impl ZipkinExporter {
    /// Posts to `OTEL_EXPORTER_ZIPKIN_ENDPOINT`, else `endpoint`, else the default (timeout
    /// `OTEL_EXPORTER_ZIPKIN_TIMEOUT` ms, default 10 s). Builds a blocking client: call it off
    /// any async runtime's threads.
    pub(crate) fn new(service: &str, endpoint: Option<String>) -> Result<Self, String> {
        let endpoint = std::env::var("OTEL_EXPORTER_ZIPKIN_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .or(endpoint)
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let timeout = std::env::var("OTEL_EXPORTER_ZIPKIN_TIMEOUT")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis);
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            endpoint,
            service: service.to_owned(),
        })
    }
}

impl SpanExporter for ZipkinExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans: Vec<Value> = batch
            .iter()
            .map(|s| zipkin_span(&self.service, s))
            .collect();
        let response = self
            .http
            .post(&self.endpoint)
            .json(&spans)
            .send()
            .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "zipkin answered {}",
                response.status()
            )))
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(name) = resource.get(&opentelemetry::Key::from_static_str("service.name")) {
            self.service = name.to_string();
        }
    }
}

fn micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One span in Zipkin's v2 model.
fn zipkin_span(service: &str, span: &SpanData) -> Value {
    let mut tags: Map<String, Value> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), Value::String(kv.value.to_string())))
        .collect();
    if let Status::Error { description } = &span.status {
        let text = if description.is_empty() {
            "true"
        } else {
            description
        };
        tags.insert("error".into(), Value::String(text.to_owned()));
        tags.insert("otel.status_code".into(), Value::String("ERROR".into()));
    }
    let start = micros(span.start_time);
    let mut value = json!({
        "traceId": span.span_context.trace_id().to_string(),
        "id": span.span_context.span_id().to_string(),
        "name": span.name,
        "timestamp": start,
        "duration": micros(span.end_time).saturating_sub(start).max(1),
        "localEndpoint": {"serviceName": service},
        "tags": tags,
    });
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        value["parentId"] = Value::String(span.parent_span_id.to_string());
    }
    let kind = match span.span_kind {
        SpanKind::Client => Some("CLIENT"),
        SpanKind::Server => Some("SERVER"),
        SpanKind::Producer => Some("PRODUCER"),
        SpanKind::Consumer => Some("CONSUMER"),
        SpanKind::Internal => None,
    };
    if let Some(kind) = kind {
        value["kind"] = Value::String(kind.into());
    }
    value
}
