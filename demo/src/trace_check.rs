//! One order's trace, read back from a real collector: the scenario sends an order with a
//! `traceparent` of its own through the gateway, then asks Zipkin (`/api/v2/trace/{id}`) for
//! the spans every process exported, and checks that the path gateway → order → payment and
//! delivery is there, each server span the child of its caller's client span.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One Zipkin v2 span, as much of it as the check reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZipkinSpan {
    id: String,
    parent_id: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    name: String,
    local_endpoint: Option<Endpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    service_name: Option<String>,
}

/// What the collector holds of one trace.
#[derive(Debug)]
pub(crate) struct TraceSummary {
    pub(crate) spans: usize,
    pub(crate) services: BTreeSet<String>,
    /// Hops `caller → callee` where the callee's server span is the child of a client span
    /// of the caller.
    pub(crate) hops: BTreeSet<(String, String)>,
    /// Spans whose parent is neither in the trace nor the order's own root.
    pub(crate) unlinked: usize,
}

/// The hops an order's trace must show.
pub(crate) const EXPECTED_HOPS: [(&str, &str); 3] = [
    ("msakit-gateway", "order"),
    ("order", "payment"),
    ("order", "delivery"),
];

impl TraceSummary {
    /// Whether every expected hop is there and nothing hangs loose.
    pub(crate) fn linked(&self) -> bool {
        self.unlinked == 0
            && EXPECTED_HOPS
                .iter()
                .all(|(a, b)| self.hops.contains(&((*a).to_owned(), (*b).to_owned())))
    }
}

/// A new trace's `traceparent`: (header value, trace id, the root span's id).
pub(crate) fn new_traceparent() -> (String, String, String) {
    let trace = format!("{:032x}", fastrand::u128(1..));
    let root = format!("{:016x}", fastrand::u64(1..));
    (format!("00-{trace}-{root}-01"), trace, root)
}

/// Polls Zipkin until the trace shows every expected hop (or `within` passes), and says what
/// it last saw.
pub(crate) async fn read_back(
    http: &reqwest::Client,
    zipkin: &str,
    trace: &str,
    root: &str,
    within: Duration,
) -> Option<TraceSummary> {
    let started = Instant::now();
    let url = format!("{}/api/v2/trace/{trace}", zipkin.trim_end_matches('/'));
    let mut last = None;
    while started.elapsed() < within {
        if let Ok(response) = http.get(&url).send().await
            && response.status().is_success()
            && let Ok(spans) = response.json::<Vec<ZipkinSpan>>().await
        {
            let summary = summarise(&spans, root);
            if summary.linked() {
                return Some(summary);
            }
            last = Some(summary);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}

fn summarise(spans: &[ZipkinSpan], root: &str) -> TraceSummary {
    let service = |s: &ZipkinSpan| {
        s.local_endpoint
            .as_ref()
            .and_then(|e| e.service_name.clone())
            .unwrap_or_default()
    };
    let by_id: BTreeMap<&str, &ZipkinSpan> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut hops = BTreeSet::new();
    let mut unlinked = 0;
    for span in spans {
        let Some(parent_id) = span.parent_id.as_deref() else {
            continue;
        };
        match by_id.get(parent_id) {
            Some(parent) => {
                if span.kind.as_deref() == Some("SERVER")
                    && parent.kind.as_deref() == Some("CLIENT")
                {
                    hops.insert((service(parent), service(span)));
                }
            }
            None if parent_id == root => {}
            None => {
                tracing::debug!(span = %span.name, parent_id, "span whose parent is not in the trace");
                unlinked += 1;
            }
        }
    }
    TraceSummary {
        spans: spans.len(),
        services: spans.iter().map(service).collect(),
        hops,
        unlinked,
    }
}
