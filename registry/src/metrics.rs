//! Prometheus metrics for one registry server.
//!
//! Each server owns its recorder (not the process-global one), so several servers in one process
//! — as in tests — keep separate figures. Counters kept by the registry itself are exported as they
//! are at scrape time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusRecorder;
use msakit_api::registry::InstanceStatus;

use crate::registry::Registry;

/// The server's metrics.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    /// What the server's limits refused.
    rejections: Arc<msakit_server_kit::Rejections>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            recorder: Arc::new(msakit_server_kit::prometheus_recorder()),
            rejections: Arc::default(),
        }
    }

    /// The exporter's handle (for upkeep).
    pub(crate) fn handle(&self) -> metrics_exporter_prometheus::PrometheusHandle {
        self.recorder.handle()
    }

    /// The counts of what the server's limits refused.
    pub(crate) fn rejections(&self) -> Arc<msakit_server_kit::Rejections> {
        Arc::clone(&self.rejections)
    }

    /// Exports the limits' refusals (called while rendering).
    fn export_rejections(&self) {
        for (limit, count) in self.rejections.snapshot() {
            metrics::counter!("msakit_limit_rejections_total", "limit" => limit).absolute(count);
        }
    }

    /// Records every request's latency through the shared middleware.
    pub(crate) fn observer(&self) -> msakit_server_kit::RequestObserver {
        let metrics = self.clone();
        Arc::new(move |method, route, status, elapsed| {
            metrics.request(method, route, status, elapsed)
        })
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
    pub(crate) fn render(
        &self,
        registry: &Registry,
        cluster: Option<&crate::cluster::Cluster>,
    ) -> String {
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
            if let Some(cluster) = cluster {
                cluster.export_gauges();
            }
        });
        metrics::with_local_recorder(&*self.recorder, || self.export_rejections());
        self.recorder.handle().render()
    }
}
