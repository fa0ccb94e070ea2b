//! A server's own Prometheus metrics: a recorder of its own (not the process-global one, so
//! several servers in one process — as in tests — keep separate figures), request latencies
//! through [`time_requests`](crate::time_requests), the watcher gauge, the limits' refusals, and
//! the upkeep that keeps an unscraped recorder from growing.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use tokio_util::sync::CancellationToken;

use crate::{Rejections, RequestObserver};

/// Buckets of the servers' latency histograms, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A Prometheus recorder of its own, with [`LATENCY_BUCKETS`] for every metric ending in
/// `_seconds`.
pub fn prometheus_recorder() -> PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .expect("the bucket list is not empty")
        .build_recorder()
}

/// Drains `handle`'s histogram samples into their buckets every 5 s until `stop` is cancelled.
/// The exporter otherwise keeps every sample until the next `/metrics` render, so a server that
/// nobody scrapes would grow without bound (found by a soak run under heaptrack).
pub fn spawn_metrics_upkeep(
    handle: PrometheusHandle,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(5));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => handle.run_upkeep(),
                _ = stop.cancelled() => return,
            }
        }
    })
}

/// The request-latency histograms registered so far, by method, route and status. A request
/// finds its histogram by a hash of its labels under a read lock, rather than building three
/// label strings and a key and looking that up in the recorder each time.
#[derive(Debug, Default)]
struct RequestHistograms {
    known: RwLock<HashMap<u64, Vec<(Labels, metrics::Histogram)>>>,
}

/// A histogram's labels.
#[derive(Debug, PartialEq, Eq)]
struct Labels {
    method: String,
    route: String,
    status: u16,
}

impl Labels {
    fn are(&self, method: &str, route: &str, status: u16) -> bool {
        self.status == status && self.method == method && self.route == route
    }
}

impl RequestHistograms {
    /// The histogram for these labels, registered with `register` the first time.
    fn get(
        &self,
        method: &str,
        route: &str,
        status: u16,
        register: impl FnOnce() -> metrics::Histogram,
    ) -> metrics::Histogram {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (method, route, status).hash(&mut hasher);
        let hash = hasher.finish();
        let found = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .and_then(|same| same.iter().find(|(l, _)| l.are(method, route, status)))
            .map(|(_, histogram)| histogram.clone());
        if let Some(histogram) = found {
            return histogram;
        }
        let histogram = register();
        let labels = Labels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        };
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let same = known.entry(hash).or_default();
        if !same.iter().any(|(l, _)| *l == labels) {
            same.push((labels, histogram.clone()));
        }
        histogram
    }
}

/// The names of the metrics every server records, in its own namespace.
#[derive(Debug, Clone, Copy)]
pub struct MetricNames {
    /// The request-latency histogram (labels `method`, `route`, `status`).
    pub requests: &'static str,
    /// The gauge of open watch streams.
    pub watchers: &'static str,
}

/// One server's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    recorder: Arc<PrometheusRecorder>,
    rejections: Arc<Rejections>,
    names: MetricNames,
}

impl ServerMetrics {
    /// A fresh recorder recording under `names`.
    pub fn new(names: MetricNames) -> Self {
        Self {
            recorder: Arc::new(prometheus_recorder()),
            rejections: Arc::default(),
            names,
        }
    }

    /// The counts of what the server's limits refused.
    pub fn rejections(&self) -> Arc<Rejections> {
        Arc::clone(&self.rejections)
    }

    /// Keeps the recorder from growing while nobody scrapes it, until `stop`.
    pub fn spawn_upkeep(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        spawn_metrics_upkeep(self.recorder.handle(), stop)
    }

    /// Runs `record` with this server's recorder as the one the `metrics` macros record to.
    pub fn with<R>(&self, record: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(&*self.recorder, record)
    }

    /// Records every request's latency through the shared middleware.
    pub fn observer(&self) -> RequestObserver {
        let metrics = self.clone();
        let histograms = Arc::new(RequestHistograms::default());
        Arc::new(move |method, route, status, elapsed| {
            histograms
                .get(method, route, status, || {
                    metrics.with(|| {
                        metrics::histogram!(
                            metrics.names.requests,
                            "method" => method.to_owned(),
                            "route" => route.to_owned(),
                            "status" => status.to_string()
                        )
                    })
                })
                .record(elapsed.as_secs_f64());
        })
    }

    /// Counts a watch stream for as long as the guard lives.
    pub fn watcher(&self) -> WatcherGauge {
        self.watchers(1.0);
        WatcherGauge(self.clone())
    }

    fn watchers(&self, delta: f64) {
        self.with(|| metrics::gauge!(self.names.watchers).increment(delta));
    }

    /// The Prometheus text exposition: what `export` records at scrape time (a server's gauges
    /// and counters read from its state), then the limits' refusals.
    pub fn render(&self, export: impl FnOnce()) -> String {
        self.with(|| {
            export();
            for (limit, count) in self.rejections.snapshot() {
                metrics::counter!("msakit_limit_rejections_total", "limit" => limit)
                    .absolute(count);
            }
        });
        self.recorder.handle().render()
    }
}

/// One open watch stream, counted in the watcher gauge until dropped.
#[derive(Debug)]
pub struct WatcherGauge(ServerMetrics);

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        self.0.watchers(-1.0);
    }
}

#[cfg(test)]
mod request_histograms_tests {
    use std::cell::Cell;

    use super::RequestHistograms;

    #[test]
    fn each_label_set_is_registered_once() {
        let histograms = RequestHistograms::default();
        let registered = Cell::new(0);
        let register = || {
            registered.set(registered.get() + 1);
            metrics::Histogram::noop()
        };
        for (method, route, status) in [
            ("GET", "/v1/services/{service}", 200),
            ("GET", "/v1/services/{service}", 200),
            ("GET", "/v1/services/{service}", 404),
            ("PUT", "/v1/services/{service}", 200),
            ("GET", "/v1/services", 200),
        ] {
            let _histogram = histograms.get(method, route, status, register);
        }
        assert_eq!(registered.get(), 4);
    }
}
