//! Each called service's metrics: calls, retries, latency, the breaker's state.

use msakit_resilience::CircuitState;

#[derive(Debug)]
pub(super) struct ServiceMetrics {
    pub(super) succeeded: metrics::Counter,
    pub(super) failed: metrics::Counter,
    pub(super) retries: metrics::Counter,
    pub(super) budget_exhausted: metrics::Counter,
    pub(super) latency: metrics::Histogram,
    /// `msakit_circuit_breaker_state{service, state}`: 1 for the breaker's state, 0 for the
    /// others (as Resilience4j's Micrometer binding does).
    pub(super) breaker_states: [metrics::Gauge; 6],
    /// The state last exported, as an index into `breaker_states`.
    pub(super) exported_state: std::sync::atomic::AtomicUsize,
}

impl ServiceMetrics {
    pub(super) fn new(service: &str) -> Self {
        let service = service.to_owned();
        Self {
            succeeded: metrics::counter!("msakit_calls_total", "service" => service.clone(), "outcome" => "success"),
            failed: metrics::counter!("msakit_calls_total", "service" => service.clone(), "outcome" => "failure"),
            retries: metrics::counter!("msakit_retries_total", "service" => service.clone()),
            budget_exhausted: metrics::counter!("msakit_retry_budget_exhausted_total", "service" => service.clone()),
            breaker_states: BREAKER_STATES.map(|(_, name)| {
                metrics::gauge!("msakit_circuit_breaker_state", "service" => service.clone(), "state" => name)
            }),
            exported_state: std::sync::atomic::AtomicUsize::new(usize::MAX),
            latency: metrics::histogram!("msakit_call_duration_seconds", "service" => service),
        }
    }

    /// Exports the breaker's state when it differs from the one last exported.
    pub(super) fn export_breaker_state(&self, state: CircuitState) {
        let index = BREAKER_STATES
            .iter()
            .position(|(s, _)| *s == state)
            .unwrap_or(0);
        let previous = self
            .exported_state
            .swap(index, std::sync::atomic::Ordering::Relaxed);
        if previous != index {
            if let Some(gauge) = self.breaker_states.get(previous) {
                gauge.set(0.0);
            }
            self.breaker_states[index].set(1.0);
        }
    }
}

/// The breaker states, with their names as metric labels.
pub(super) const BREAKER_STATES: [(CircuitState, &str); 6] = [
    (CircuitState::Closed, "closed"),
    (CircuitState::Open, "open"),
    (CircuitState::HalfOpen, "half_open"),
    (CircuitState::Disabled, "disabled"),
    (CircuitState::ForcedOpen, "forced_open"),
    (CircuitState::MetricsOnly, "metrics_only"),
];
