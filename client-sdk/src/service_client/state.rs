//! Each called service's state: its picker (the instances discovery last gave, with their
//! latencies and ejections), its breaker and its metrics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msakit_api::registry::Instance;
use msakit_resilience::CircuitBreaker;

use super::ServiceClient;
use super::metrics::ServiceMetrics;
use crate::picker::{AttemptEnd, Picked, Picker, Ticket, Tried};

/// One service's balancer state and breaker.
#[derive(Debug)]
pub(super) struct ServiceState {
    pub(super) breaker: CircuitBreaker,
    pub(super) picker: Mutex<Picker>,
    /// Metric handles, registered once per service.
    pub(super) metrics: ServiceMetrics,
}

impl ServiceClient {
    pub(super) fn state(&self, service: &str) -> Arc<ServiceState> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = services.get(service) {
            return Arc::clone(state);
        }
        Arc::clone(
            services
                .entry(service.to_owned())
                .or_insert_with(|| self.new_state(service)),
        )
    }

    /// A service's state, on its first call.
    #[cold]
    #[inline(never)]
    pub(super) fn new_state(&self, service: &str) -> Arc<ServiceState> {
        Arc::new(ServiceState {
            breaker: CircuitBreaker::new(service.to_owned(), self.options.breaker.clone())
                .expect("validated in new"),
            picker: Mutex::new(Picker::default()),
            metrics: ServiceMetrics::new(service),
        })
    }

    /// The service's instances as of the last pick, if discovery has not changed since.
    pub(super) fn current_instances(
        &self,
        state: &ServiceState,
        generation: u64,
    ) -> Option<Arc<Vec<Instance>>> {
        state
            .picker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current_instances(generation)
    }

    /// Chooses the attempt's instance (see [`Picker::pick`]).
    pub(super) fn pick(
        &self,
        state: &ServiceState,
        instances: &Arc<Vec<Instance>>,
        generation: u64,
        tried: &Tried,
        path: &str,
        now: Instant,
    ) -> Option<Picked> {
        state.picker.lock().unwrap_or_else(|e| e.into_inner()).pick(
            instances,
            generation,
            self.discovery.zone(),
            self.options.balancer,
            tried,
            path,
            now,
        )
    }

    /// Takes back an attempt its call dropped (see [`Picker::cancel`]).
    #[cold]
    #[inline(never)]
    pub(super) fn cancel(&self, state: &ServiceState, ticket: Ticket, instance: &str) {
        state
            .picker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel(ticket, instance);
    }

    /// Records how an attempt went (see [`Picker::finish`]), and says so when that ejects the
    /// instance.
    pub(super) fn finish(
        &self,
        state: &ServiceState,
        ticket: Ticket,
        instance: &str,
        latency: Duration,
        end: AttemptEnd,
        now: Instant,
    ) {
        let ejected = state
            .picker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finish(ticket, instance, latency, end, now, &self.options);
        if let Some(duration) = ejected {
            metrics::counter!("msakit_ejections_total").increment(1);
            tracing::warn!(%instance, ?duration, "instance ejected after repeated failures");
        }
    }
}
