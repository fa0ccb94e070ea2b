//! Calls to other services by name: discovery, power-of-two-choices balancing over peak-EWMA
//! latency, per-instance outlier ejection, a per-service circuit breaker, retries on another
//! instance within a shared retry budget, a per-attempt timeout and an overall deadline that is
//! passed downstream.

//!
//! One concept per file: `options` (how it balances, retries, times out and ejects), `request`
//! (a call being built and sent), `attempt` (the attempts of one call), `state` (each called
//! service's picker and breaker), `error`, `metrics`, `headers` (deadline and trace context),
//! `tower` (the `tower::Service` face).

mod attempt;
mod error;
mod headers;
mod metrics;
mod options;
mod request;
mod state;
mod tower;

use std::sync::{Arc, Mutex};

use foldhash::HashMap;
use msakit_resilience::retry::RetryBudget;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};

use crate::discovery::Discovery;
pub use error::{CallError, CallErrorKind};
pub use headers::DEADLINE_HEADER;
use headers::deadline_value;
pub use options::{Balancer, ServiceClientOptions};
pub use request::{Fallback, ServiceRequest};
use state::ServiceState;
pub use tower::ServiceCall;

/// Calls services by name. Cheap to clone; clones share balancer state, breakers and budget.
///
/// It is also a `tower::Service<ServiceCall>`, for stacks that add their own layers.
#[derive(Clone)]
pub struct ServiceClient {
    discovery: Discovery,
    http: reqwest::Client,
    options: Arc<ServiceClientOptions>,
    budget: RetryBudget,
    services: Arc<Mutex<HashMap<String, Arc<ServiceState>>>>,
    fallbacks: Arc<Mutex<HashMap<String, Fallback>>>,
    /// The deadline header of a first attempt (the whole deadline left), made once.
    whole_deadline: HeaderValue,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// A client over `discovery`, sending with `http` (see
    /// [`Client::service_client`](crate::Client::service_client)).
    pub(crate) fn new(
        discovery: Discovery,
        http: reqwest::Client,
        options: ServiceClientOptions,
    ) -> Result<Self, msakit_resilience::InvalidConfig> {
        options.breaker.validate()?;
        Ok(Self {
            discovery,
            http,
            budget: RetryBudget::new(&options.budget)?,
            whole_deadline: deadline_value(options.deadline),
            options: Arc::new(options),
            services: Arc::new(Mutex::new(HashMap::default())),
            fallbacks: Arc::new(Mutex::new(HashMap::default())),
        })
    }

    /// A request to `path` on `service`. GET, HEAD, PUT, DELETE and OPTIONS are retried;
    /// other methods only when marked [`retryable`](ServiceRequest::retryable).
    pub fn request<'a>(
        &'a self,
        method: Method,
        service: &'a str,
        path: &'a str,
    ) -> ServiceRequest<'a> {
        let retryable = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        ServiceRequest {
            client: self,
            service,
            method,
            path,
            headers: HeaderMap::new(),
            body: None,
            stream: None,
            stream_failed: None,
            retryable,
            trace_id: None,
            parent_span: None,
            trace_flags: opentelemetry::trace::TraceFlags::SAMPLED,
            invalid: None,
            fallback: None,
        }
    }

    /// Answers calls to `service` that fail (after retries) with what `fallback` returns, when it
    /// returns something: a cached or default response, say.
    pub fn set_fallback(&self, service: &str, fallback: Fallback) {
        self.fallbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service.to_owned(), fallback);
    }

    /// A GET to `path` on `service`.
    pub fn get<'a>(&'a self, service: &'a str, path: &'a str) -> ServiceRequest<'a> {
        self.request(Method::GET, service, path)
    }

    /// A POST to `path` on `service`.
    pub fn post<'a>(&'a self, service: &'a str, path: &'a str) -> ServiceRequest<'a> {
        self.request(Method::POST, service, path)
    }
}
