//! Prometheus metrics for one registry server.
//!
//! Each server owns its recorder (not the process-global one), so several servers in one process
//! — as in tests — keep separate figures. Counters kept by the registry itself are exported as they
//! are at scrape time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use msakit_api::registry::InstanceStatus;

use crate::registry::Registry;

/// Buckets of the request-latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// The server's metrics.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("registry_http_request_duration_seconds".into()),
                &LATENCY_BUCKETS,
            )
            .expect("the bucket list is not empty")
            .build_recorder();
        Self {
            recorder: Arc::new(recorder),
        }
    }

    /// Records one HTTP request.
    pub(crate) fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let (method, route) = (method.to_owned(), route.to_owned());
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::histogram!(
                "registry_http_request_duration_seconds",
                "method" => method,
                "route" => route,
                "status" => status.to_string()
            )
            .record(elapsed.as_secs_f64());
        });
    }

    /// Adds or removes an SSE watcher.
    pub(crate) fn watchers(&self, delta: f64) {
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::gauge!("registry_watchers").increment(delta);
        });
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, registry: &Registry) -> String {
        let counts = registry.count_by_status();
        let counters = registry.counters();
        metrics::with_local_recorder(&*self.recorder, || {
            for status in InstanceStatus::ALL {
                metrics::gauge!("registry_instances", "status" => status.as_str())
                    .set(counts.get(&status).copied().unwrap_or(0) as f64);
            }
            let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            metrics::counter!("registry_registrations_total")
                .absolute(load(&counters.registrations));
            metrics::counter!("registry_renewals_total").absolute(load(&counters.renewals));
            metrics::counter!("registry_renewals_unknown_total")
                .absolute(load(&counters.renewals_unknown));
            metrics::counter!("registry_deregistrations_total")
                .absolute(load(&counters.deregistrations));
            metrics::counter!("registry_evictions_total").absolute(load(&counters.evictions));
            metrics::gauge!("registry_self_preservation").set(if registry.is_self_preserving() {
                1.0
            } else {
                0.0
            });
            metrics::gauge!("registry_index").set(registry.index() as f64);
        });
        self.recorder.handle().render()
    }
}
