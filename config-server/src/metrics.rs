//! Prometheus metrics for one config server: the shared [`ServerMetrics`] (its own recorder,
//! request latencies, watchers, refusals) and the config server's own counts.

use std::ops::Deref;
use std::time::Duration;

use msakit_server_kit::{MetricNames, ServerMetrics};

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
            requests: "config_http_request_duration_seconds",
            watchers: "config_watchers",
        }))
    }

    /// A read of a document or a resolved view.
    pub(crate) fn read(&self) {
        self.with(|| metrics::counter!("config_reads_total").increment(1));
    }

    /// A committed write (new version, deletion or rollback).
    pub(crate) fn write(&self) {
        self.with(|| metrics::counter!("config_writes_total").increment(1));
    }

    /// Time from a commit to its push on one watch stream.
    pub(crate) fn pushed(&self, latency: Duration) {
        self.with(|| {
            metrics::histogram!("config_push_latency_seconds").record(latency.as_secs_f64())
        });
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(
        &self,
        documents: usize,
        index: u64,
        cluster: Option<&crate::cluster::Cluster>,
    ) -> String {
        self.0.render(|| {
            metrics::gauge!("config_documents").set(documents as f64);
            metrics::gauge!("config_index").set(index as f64);
            if let Some(cluster) = cluster {
                cluster.export_gauges();
            }
        })
    }
}
