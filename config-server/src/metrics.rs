//! Prometheus metrics for one config server (its own recorder, so servers in one process stay
//! apart).

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusRecorder;

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

    fn with(&self, f: impl FnOnce()) {
        metrics::with_local_recorder(&*self.recorder, f);
    }

    /// One HTTP request.
    pub(crate) fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.with(|| {
            metrics::histogram!("config_http_request_duration_seconds", "method" => method, "route" => route, "status" => status.to_string())
                .record(elapsed.as_secs_f64());
        });
    }

    /// A read of a document or a resolved view.
    pub(crate) fn read(&self) {
        self.with(|| metrics::counter!("config_reads_total").increment(1));
    }

    /// A committed write (new version, deletion or rollback).
    pub(crate) fn write(&self) {
        self.with(|| metrics::counter!("config_writes_total").increment(1));
    }

    /// A watcher came or went.
    pub(crate) fn watchers(&self, delta: f64) {
        self.with(|| metrics::gauge!("config_watchers").increment(delta));
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
        self.with(|| {
            metrics::gauge!("config_documents").set(documents as f64);
            metrics::gauge!("config_index").set(index as f64);
            if let Some(cluster) = cluster {
                cluster.export_gauges();
            }
        });
        metrics::with_local_recorder(&*self.recorder, || self.export_rejections());
        self.recorder.handle().render()
    }
}
