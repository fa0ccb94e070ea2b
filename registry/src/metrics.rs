//! Prometheus metrics for one registry server: the shared [`ServerMetrics`] (its own recorder,
//! request latencies, watchers, refusals) and what the registry exports at scrape time.

use std::ops::Deref;
use std::sync::atomic::Ordering;

use msakit_api::registry::InstanceStatus;
use msakit_server_kit::{MetricNames, ServerMetrics};

use crate::registry::Registry;

/// The server's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Metrics(ServerMetrics);

impl Deref for Metrics {
    type Target = ServerMetrics;

    fn deref(&self) -> &ServerMetrics {
        &self.0
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self(ServerMetrics::new(MetricNames {
            requests: "registry_http_request_duration_seconds",
            watchers: "registry_watchers",
        }))
    }

    /// The Prometheus text exposition, the registry's counters and gauges read as they are now.
    pub(crate) fn render(
        &self,
        registry: &Registry,
        cluster: Option<&crate::cluster::Cluster>,
    ) -> String {
        let counts = registry.count_by_status();
        let counters = registry.counters();
        self.0.render(|| {
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
        })
    }
}
