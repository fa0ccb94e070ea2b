//! Per-route counters, for the admin API (and, labelled by route, for Prometheus). Kept across
//! reloads while the route's id stays.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// What happened on one route.
#[derive(Debug)]
pub(crate) struct RouteCounters {
    /// Time to the response's headers, a histogram registered once (no label lookup per
    /// request).
    latency: metrics::Histogram,
    requests: AtomicU64,
    in_flight: AtomicU64,
    status: [AtomicU64; 5],
    unauthorized: AtomicU64,
    rate_limited: AtomicU64,
    too_large: AtomicU64,
    upstream_failed: AtomicU64,
}

/// Why the gateway answered itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unauthorized,
    RateLimited,
    TooLarge,
    UpstreamFailed,
}

/// A snapshot.
#[derive(Debug, Serialize)]
pub(crate) struct CountersView {
    requests: u64,
    in_flight: u64,
    responses: ResponsesView,
    unauthorized: u64,
    rate_limited: u64,
    too_large: u64,
    upstream_failed: u64,
}

#[derive(Debug, Serialize)]
struct ResponsesView {
    #[serde(rename = "1xx")]
    informational: u64,
    #[serde(rename = "2xx")]
    success: u64,
    #[serde(rename = "3xx")]
    redirection: u64,
    #[serde(rename = "4xx")]
    client_error: u64,
    #[serde(rename = "5xx")]
    server_error: u64,
}

/// Counts a request in flight until dropped.
pub(crate) struct InFlight<'c>(&'c RouteCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RouteCounters {
    /// Counters of a route, its latency histogram registered with `metrics`.
    pub(crate) fn new(route: &str, metrics: &msakit_server_kit::ServerMetrics) -> Self {
        let latency = metrics.with(
            || metrics::histogram!("gateway_route_duration_seconds", "route" => route.to_owned()),
        );
        Self {
            latency,
            requests: AtomicU64::default(),
            in_flight: AtomicU64::default(),
            status: Default::default(),
            unauthorized: AtomicU64::default(),
            rate_limited: AtomicU64::default(),
            too_large: AtomicU64::default(),
            upstream_failed: AtomicU64::default(),
        }
    }

    /// The time a request took to its response's headers.
    pub(crate) fn took(&self, elapsed: std::time::Duration) {
        self.latency.record(elapsed.as_secs_f64());
    }

    /// A request arrives.
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// The status answered.
    pub(crate) fn answered(&self, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        self.status[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The gateway refused or failed the request itself.
    pub(crate) fn refused(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::Unauthorized => &self.unauthorized,
            Refusal::RateLimited => &self.rate_limited,
            Refusal::TooLarge => &self.too_large,
            Refusal::UpstreamFailed => &self.upstream_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the counts as Prometheus series labelled with `route` (at scrape time).
    pub(crate) fn export(&self, route: &str) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let label = || route.to_owned();
        metrics::counter!("gateway_route_requests_total", "route" => label())
            .absolute(get(&self.requests));
        metrics::gauge!("gateway_route_in_flight", "route" => label())
            .set(get(&self.in_flight) as f64);
        for (class, count) in ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .into_iter()
            .zip(&self.status)
        {
            metrics::counter!("gateway_route_responses_total", "route" => label(), "class" => class)
                .absolute(get(count));
        }
        for (reason, count) in [
            ("unauthorized", &self.unauthorized),
            ("rate_limited", &self.rate_limited),
            ("too_large", &self.too_large),
            ("upstream_failed", &self.upstream_failed),
        ] {
            metrics::counter!("gateway_route_refusals_total", "route" => label(), "reason" => reason)
                .absolute(get(count));
        }
    }

    pub(crate) fn view(&self) -> CountersView {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersView {
            requests: get(&self.requests),
            in_flight: get(&self.in_flight),
            responses: ResponsesView {
                informational: get(&self.status[0]),
                success: get(&self.status[1]),
                redirection: get(&self.status[2]),
                client_error: get(&self.status[3]),
                server_error: get(&self.status[4]),
            },
            unauthorized: get(&self.unauthorized),
            rate_limited: get(&self.rate_limited),
            too_large: get(&self.too_large),
            upstream_failed: get(&self.upstream_failed),
        }
    }
}
