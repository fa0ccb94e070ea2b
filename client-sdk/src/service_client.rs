//! Calls to other services by name: discovery, power-of-two-choices balancing over peak-EWMA
//! latency, per-instance outlier ejection, a per-service circuit breaker, retries on another
//! instance within a shared retry budget, a per-attempt timeout and an overall deadline that is
//! passed downstream.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use msakit_api::registry::Instance;
use msakit_resilience::CircuitState;
use msakit_resilience::circuit_breaker::CallOutcome;
use msakit_resilience::retry::{RetryBudget, RetryBudgetConfig};
use msakit_resilience::{CircuitBreaker, CircuitBreakerConfig};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::discovery::Discovery;
use crate::picker::{AttemptEnd, Picked, Picker, Ticket, Tried};

/// The request header carrying how many milliseconds the caller still waits, so the callee can
/// give up when the caller already has.
pub const DEADLINE_HEADER: &str = "x-msakit-deadline-ms";

/// [`DEADLINE_HEADER`] as a header name, built at compile time rather than parsed per call.
const DEADLINE: HeaderName = HeaderName::from_static(DEADLINE_HEADER);
/// The W3C trace context header.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// How an instance is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balancer {
    /// Two instances at random, the one with the lower peak-EWMA latency × load (Finagle,
    /// Linkerd). Moves load away from slow instances at once.
    #[default]
    PowerOfTwoChoices,
    /// Each instance in turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// At random, in proportion to the instances' registered weights.
    Weighted,
}

/// How calls behave.
#[derive(Debug, Clone)]
pub struct ServiceClientOptions {
    /// How an instance is chosen. Default power of two choices.
    pub balancer: Balancer,
    /// Attempts in all, on different instances when there are. Default 3.
    pub max_attempts: u32,
    /// Time for one attempt. Default 2 s.
    pub attempt_timeout: Duration,
    /// Time for the whole call, attempts and pauses included. Default 5 s.
    pub deadline: Duration,
    /// The per-service breaker. Default: Resilience4j's, with a window of 20 calls.
    pub breaker: CircuitBreakerConfig,
    /// The retry budget shared by every call of this client. Default 20% + 10/s over 10 s.
    pub budget: RetryBudgetConfig,
    /// Failures in a row that eject an instance. Default 5.
    pub eject_after_failures: u32,
    /// The first ejection; each further one doubles, up to 5 min. Default 10 s.
    pub ejection: Duration,
    /// At most this share of a service's instances is ejected at once. Default 0.5.
    pub max_ejected_share: f64,
    /// Extra CAs to trust and a client certificate, for HTTPS. Default: public roots only.
    pub tls: crate::TlsOptions,
}

impl Default for ServiceClientOptions {
    fn default() -> Self {
        Self {
            balancer: Balancer::PowerOfTwoChoices,
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            breaker: CircuitBreakerConfig {
                sliding_window_size: 20,
                minimum_number_of_calls: 20,
                ..Default::default()
            },
            budget: RetryBudgetConfig::default(),
            eject_after_failures: 5,
            ejection: Duration::from_secs(10),
            max_ejected_share: 0.5,
            tls: crate::TlsOptions::default(),
        }
    }
}

/// Why a call failed: which service, the last instance tried, how many attempts, and why. Its
/// [`source`](std::error::Error::source) is the cause behind the kind (the transport's
/// `reqwest::Error`, the body's serialisation error, …), so callers can look through it.
#[derive(Debug)]
pub struct CallError {
    /// The service called.
    pub service: String,
    /// The last instance tried.
    pub instance: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Why.
    pub kind: CallErrorKind,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "call to {} failed after {} attempt(s)",
            self.service, self.attempts
        )?;
        if let Some(instance) = &self.instance {
            write!(f, " (last instance {instance})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The kind's message is already in this one's: its cause is the source.
        std::error::Error::source(&self.kind)
    }
}

impl CallError {
    /// Whether the call ran out of time: an attempt's timeout, the deadline, or the transport's
    /// own timeout (also behind an exhausted retry budget).
    pub fn is_timeout(&self) -> bool {
        self.kind.is_timeout()
    }

    /// Whether the last attempt could not connect.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind.last(), CallErrorKind::Transport(e) if e.is_connect())
    }

    /// The status the last attempt answered with, when that is why the call failed.
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind.last() {
            CallErrorKind::Status(status) => Some(*status),
            _ => None,
        }
    }
}

/// The reasons a call fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// Discovery knows no available instance.
    #[error("no available instance")]
    NoInstances,
    /// The service has never been looked up and no registry answered (nor a disk cache).
    #[error("{0}")]
    Discovery(crate::DiscoveryError),
    /// The service's breaker is open.
    #[error("{0}")]
    BreakerOpen(msakit_resilience::CallNotPermitted),
    /// Retrying would exceed the retry budget; why the last attempt failed.
    #[error("retry budget exhausted; last: {0}")]
    BudgetExhausted(#[source] Box<CallErrorKind>),
    /// The overall deadline passed.
    #[error("deadline of {0:?} exceeded")]
    Deadline(Duration),
    /// The last attempt answered with this server error.
    #[error("status {0}")]
    Status(StatusCode),
    /// The last attempt failed in transport (connect, reset, the server's answer cut off).
    #[error("{0}")]
    Transport(#[source] reqwest::Error),
    /// The last attempt took longer than the attempt timeout.
    #[error("attempt timed out after {0:?}")]
    AttemptTimeout(Duration),
    /// The instance's address makes no valid URL (`host:port/path`).
    #[error("no valid URL for {0}")]
    InvalidInstanceUrl(String),
    /// The caller's header name or value is not valid in HTTP; nothing was sent.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// The caller's body could not be serialised; nothing was sent.
    #[error("the body cannot be serialised: {0}")]
    InvalidBody(#[source] serde_json::Error),
}

impl CallErrorKind {
    /// The failure of the last attempt, looking through an exhausted budget.
    fn last(&self) -> &CallErrorKind {
        match self {
            CallErrorKind::BudgetExhausted(last) => last.last(),
            kind => kind,
        }
    }

    fn is_timeout(&self) -> bool {
        match self.last() {
            CallErrorKind::AttemptTimeout(_) | CallErrorKind::Deadline(_) => true,
            CallErrorKind::Transport(e) => e.is_timeout(),
            _ => false,
        }
    }
}

/// Why one attempt got no answer.
#[derive(Debug)]
enum AttemptError {
    /// The transport failed.
    Transport(reqwest::Error),
    /// The attempt timeout passed.
    TimedOut(Duration),
}

impl From<AttemptError> for CallErrorKind {
    fn from(error: AttemptError) -> Self {
        match error {
            AttemptError::Transport(e) => CallErrorKind::Transport(e),
            AttemptError::TimedOut(after) => CallErrorKind::AttemptTimeout(after),
        }
    }
}

/// One service's balancer state and breaker.
#[derive(Debug)]
struct ServiceState {
    breaker: CircuitBreaker,
    picker: Mutex<Picker>,
    /// Metric handles, registered once per service.
    metrics: ServiceMetrics,
}

#[derive(Debug)]
struct ServiceMetrics {
    succeeded: metrics::Counter,
    failed: metrics::Counter,
    retries: metrics::Counter,
    budget_exhausted: metrics::Counter,
    latency: metrics::Histogram,
    /// `msakit_circuit_breaker_state{service, state}`: 1 for the breaker's state, 0 for the
    /// others (as Resilience4j's Micrometer binding does).
    breaker_states: [metrics::Gauge; 6],
    /// The state last exported, as an index into `breaker_states`.
    exported_state: std::sync::atomic::AtomicUsize,
}

impl ServiceMetrics {
    fn new(service: &str) -> Self {
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
    fn export_breaker_state(&self, state: CircuitState) {
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
const BREAKER_STATES: [(CircuitState, &str); 6] = [
    (CircuitState::Closed, "closed"),
    (CircuitState::Open, "open"),
    (CircuitState::HalfOpen, "half_open"),
    (CircuitState::Disabled, "disabled"),
    (CircuitState::ForcedOpen, "forced_open"),
    (CircuitState::MetricsOnly, "metrics_only"),
];

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

/// One call, for the `tower::Service` face of [`ServiceClient`].
#[derive(Debug, Clone)]
pub struct ServiceCall {
    /// The service called.
    pub service: String,
    /// The method.
    pub method: Method,
    /// The path and query, e.g. `/pay?x=1`.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body, replayable across attempts.
    pub body: Option<Vec<u8>>,
}

impl tower::Service<ServiceCall> for ServiceClient {
    type Response = reqwest::Response;
    type Error = CallError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<reqwest::Response, CallError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), CallError>> {
        // Balancing, breaking and retrying happen per call; the client is always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ServiceCall) -> Self::Future {
        let client = self.clone();
        Box::pin(async move {
            let mut request = client.request(call.method, &call.service, &call.path);
            for (name, value) in &call.headers {
                request = request.header(name, value);
            }
            request.body = call.body.map(bytes::Bytes::from);
            request.send().await
        })
    }
}

/// A per-call fallback (see [`ServiceRequest::fallback`]).
type CallFallback = Box<dyn FnOnce(&CallError) -> Option<reqwest::Response> + Send>;

/// Which instance answered a response, and after how many attempts; kept in the response's
/// extensions so a fallback can be told about a final server error.
#[derive(Debug, Clone)]
struct Answered {
    instance: String,
    attempts: u32,
}

/// A per-service fallback: given the error, a response to answer with instead, or `None`.
pub type Fallback = Arc<dyn Fn(&CallError) -> Option<reqwest::Response> + Send + Sync>;

/// A request being built; see [`ServiceClient::request`]. It borrows the client, the service's
/// name and the path, so making one allocates nothing.
pub struct ServiceRequest<'a> {
    client: &'a ServiceClient,
    /// Answers instead of an error, for this call.
    fallback: Option<CallFallback>,
    service: &'a str,
    method: Method,
    path: &'a str,
    headers: HeaderMap,
    body: Option<bytes::Bytes>,
    retryable: bool,
    /// The W3C trace this call belongs to; a new one when none is given.
    trace_id: Option<u128>,
    /// Why the request cannot be sent (a bad header, a body that cannot be serialised),
    /// reported by `send` before anything is sent.
    invalid: Option<Box<CallErrorKind>>,
}

impl ServiceClient {
    /// A client over `discovery`.
    pub fn new(
        discovery: Discovery,
        options: ServiceClientOptions,
    ) -> Result<Self, msakit_resilience::InvalidConfig> {
        options.breaker.validate()?;
        Ok(Self {
            discovery,
            http: options
                .tls
                .builder()
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .expect("builds"),
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
            retryable,
            trace_id: None,
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

    fn state(&self, service: &str) -> Arc<ServiceState> {
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
    fn new_state(&self, service: &str) -> Arc<ServiceState> {
        Arc::new(ServiceState {
            breaker: CircuitBreaker::new(service.to_owned(), self.options.breaker.clone())
                .expect("validated in new"),
            picker: Mutex::new(Picker::default()),
            metrics: ServiceMetrics::new(service),
        })
    }

    /// The service's instances as of the last pick, if discovery has not changed since.
    fn current_instances(
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
    fn pick(
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
    fn cancel(&self, state: &ServiceState, ticket: Ticket, instance: &str) {
        state
            .picker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel(ticket, instance);
    }

    /// Records how an attempt went (see [`Picker::finish`]), and says so when that ejects the
    /// instance.
    fn finish(
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

impl std::fmt::Debug for ServiceRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRequest")
            .field("service", &self.service)
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ServiceRequest<'_> {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.headers.append(name, value);
            }
            _ => {
                self.invalid
                    .get_or_insert_with(|| Box::new(CallErrorKind::InvalidHeader(name.to_owned())));
            }
        }
        self
    }

    /// A JSON body (kept, so attempts can replay it). One that cannot be serialised makes
    /// `send` fail without sending anything.
    pub fn json<B: serde::Serialize>(mut self, body: &B) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body = Some(bytes::Bytes::from(bytes)),
            Err(e) => {
                self.invalid
                    .get_or_insert_with(|| Box::new(CallErrorKind::InvalidBody(e)));
            }
        }
        self.headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self
    }

    /// A raw body (kept, so attempts can replay it).
    pub fn body(mut self, body: impl Into<bytes::Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Continues the W3C trace of an incoming `traceparent` header (each attempt gets a span id
    /// of its own); without it, the call starts a new trace.
    pub fn traceparent(mut self, incoming: &str) -> Self {
        let parts: Vec<&str> = incoming.split('-').collect();
        if parts.len() == 4 && parts[1].len() == 32 {
            self.trace_id = u128::from_str_radix(parts[1], 16)
                .ok()
                .filter(|&id| id != 0);
        }
        self
    }

    /// Allows retrying a method that is not idempotent by nature (say, a POST with an
    /// idempotency key).
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// Sends, retrying on other instances as allowed.
    /// Answers with what `fallback` returns when the call fails (after retries), if it returns
    /// something; takes precedence over the service's fallback.
    pub fn fallback(
        mut self,
        fallback: impl FnOnce(&CallError) -> Option<reqwest::Response> + Send + 'static,
    ) -> Self {
        self.fallback = Some(Box::new(fallback));
        self
    }

    /// Sends, retrying on other instances as allowed; a failure goes to the call's fallback, then
    /// the service's.
    pub async fn send(mut self) -> Result<reqwest::Response, CallError> {
        let fallback = self.fallback.take();
        let result = self.attempts().await;
        // A server error after the last attempt is a failure too, for the fallbacks.
        let failed = match &result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        };
        if !failed {
            return result;
        }
        self.answer_failure(fallback, result)
    }

    /// A failed call's answer: the call's fallback, else the service's, else the failure. Out
    /// of line: no part of a call that succeeds.
    #[cold]
    #[inline(never)]
    fn answer_failure(
        &self,
        fallback: Option<CallFallback>,
        result: Result<reqwest::Response, CallError>,
    ) -> Result<reqwest::Response, CallError> {
        let service_fallback = || {
            self.client
                .fallbacks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(self.service)
                .cloned()
        };
        let (error, original) = match result {
            Ok(response) => {
                if fallback.is_none() && service_fallback().is_none() {
                    return Ok(response);
                }
                let answered = response.extensions().get::<Answered>().cloned();
                let error = CallError {
                    service: self.service.to_owned(),
                    instance: answered.as_ref().map(|a| a.instance.clone()),
                    attempts: answered.map_or(0, |a| a.attempts),
                    kind: CallErrorKind::Status(response.status()),
                };
                (error, Some(response))
            }
            Err(error) => (error, None),
        };
        let answer = match fallback {
            Some(fallback) => fallback(&error),
            None => None,
        }
        .or_else(|| service_fallback().and_then(|f| f(&error)));
        match answer {
            Some(response) => {
                tracing::info!(service = %error.service, %error, "answered by the fallback");
                Ok(response)
            }
            None => original.ok_or(error),
        }
    }

    /// Every attempt of the call. (`&mut`: a `ServiceRequest` is `Send` but not `Sync`.)
    async fn attempts(&mut self) -> Result<reqwest::Response, CallError> {
        let client = self.client;
        let options = &client.options;
        let state = client.state(self.service);
        let started = Instant::now();
        let deadline = started + options.deadline;
        client.budget.deposit();
        let mut tried = Tried::default();
        let mut attempts = 0;
        let trace_id = self.trace_id.unwrap_or_else(|| fastrand::u128(1..));
        // The instance of the attempt before, named when the breaker then refuses.
        let mut last_instance: Option<String> = None;
        let fail = |attempts, instance: Option<String>, kind| {
            call_error(self.service, attempts, instance, kind)
        };
        if let Some(invalid) = self.invalid.take() {
            return Err(fail(0, None, *invalid));
        }
        loop {
            // From the cache without a future; the first call of a service asks the registry
            // through a boxed one, which keeps that rare path out of every call's state.
            // Discovery's generation first: what it answers next is at least that current.
            let generation = client.discovery.generation();
            let known = client
                .current_instances(&state, generation)
                .or_else(|| client.discovery.cached(self.service));
            let (instances, asked_registry) = match known {
                Some(instances) => (instances, false),
                None => (
                    Box::pin(client.discovery.instances(self.service))
                        .await
                        .map_err(|e| fail(attempts, None, CallErrorKind::Discovery(e)))?,
                    true,
                ),
            };
            let permit = state
                .breaker
                .try_acquire_owned()
                .map_err(|e| self.breaker_refused(&state, attempts, last_instance.take(), e))?;
            // One reading of the clock for the pick, the deadline left and the attempt's start
            // (the call's own on a first attempt answered from the cache).
            let attempt_started = if attempts == 0 && !asked_registry {
                started
            } else {
                Instant::now()
            };
            let Some(Picked { index, url, ticket }) = client.pick(
                &state,
                &instances,
                generation,
                &tried,
                self.path,
                attempt_started,
            ) else {
                drop(permit);
                return Err(fail(attempts, None, CallErrorKind::NoInstances));
            };
            let instance = &instances[index];
            attempts += 1;
            let remaining = deadline.saturating_duration_since(attempt_started);
            let Some(url) = url else {
                return Err(self.no_url(&state, ticket, instance, attempts, permit));
            };
            // Until the attempt finishes, the instance counts it in flight; a call dropped before
            // then (cancelled by its caller) takes it back.
            let mut in_flight = InFlight {
                client,
                state: &state,
                ticket,
                instance: &instance.id,
                finished: false,
            };
            let mut request = reqwest::Request::new(self.method.clone(), url);
            let headers = request.headers_mut();
            if !self.headers.is_empty() {
                headers.extend(self.headers.clone());
            }
            let deadline_value = if remaining == options.deadline {
                client.whole_deadline.clone()
            } else {
                deadline_value(remaining)
            };
            headers.insert(DEADLINE, deadline_value);
            headers.insert(TRACEPARENT, traceparent(trace_id, fastrand::u64(1..)));
            if let Some(body) = &self.body {
                *request.body_mut() = Some(body.clone().into());
            }
            // The attempt's timeout around the request: the SDK's shared timer (not reqwest's
            // own, which boxes a tokio timer per request, nor tokio's, which wakes the runtime's
            // driver with a system call every other call).
            let attempt_timeout = options.attempt_timeout.min(remaining);
            let result = match crate::timer::timeout_at(
                attempt_started + attempt_timeout,
                client.http.execute(request),
            )
            .await
            {
                Ok(result) => result.map_err(AttemptError::Transport),
                Err(_) => Err(AttemptError::TimedOut(attempt_timeout)),
            };
            let ended = Instant::now();
            let latency = ended.saturating_duration_since(attempt_started);
            let failed = match &result {
                Ok(response) => {
                    response.status().is_server_error()
                        || response.status() == StatusCode::TOO_MANY_REQUESTS
                }
                Err(_) => true,
            };
            in_flight.finished = true;
            let (end, outcome) = if failed {
                (AttemptEnd::Failed, CallOutcome::Failure)
            } else {
                (AttemptEnd::Succeeded, CallOutcome::Success)
            };
            client.finish(&state, ticket, &instance.id, latency, end, ended);
            permit.record(outcome);
            state.metrics.export_breaker_state(state.breaker.state());
            log_attempt(
                self.service,
                &instance.id,
                attempts,
                failed,
                latency,
                &state.breaker,
                trace_id,
            );
            let calls = if failed {
                &state.metrics.failed
            } else {
                &state.metrics.succeeded
            };
            calls.increment(1);
            state.metrics.latency.record(latency.as_secs_f64());
            if attempts > 1 {
                state.metrics.retries.increment(1);
            }
            if !failed {
                return result.map_err(|e| fail(attempts, Some(instance.id.clone()), e.into()));
            }
            let pause =
                match self.retry_pause(&state, &instance.id, attempts, result, ended, deadline) {
                    NextAttempt::After(pause) => pause,
                    NextAttempt::None(answer) => return answer,
                };
            tried.push(&instance.id);
            last_instance = Some(instance.id.clone());
            tokio::time::sleep(pause).await;
        }
    }

    /// After a failed attempt: the pause before the next one, or the call's answer when there
    /// is none (the last response when retries are not allowed or used up, else the error).
    #[cold]
    #[inline(never)]
    fn retry_pause(
        &self,
        state: &ServiceState,
        instance: &str,
        attempts: u32,
        result: Result<reqwest::Response, AttemptError>,
        ended: Instant,
        deadline: Instant,
    ) -> NextAttempt {
        let client = self.client;
        let fail = |kind| call_error(self.service, attempts, Some(instance.to_owned()), kind);
        let retry_after = retry_after(&result);
        if !self.retryable || attempts >= client.options.max_attempts {
            return NextAttempt::None(match result {
                Ok(mut response) => {
                    response.extensions_mut().insert(Answered {
                        instance: instance.to_owned(),
                        attempts,
                    });
                    Ok(response)
                }
                Err(e) => Err(fail(e.into())),
            });
        }
        let pause = retry_after
            .unwrap_or_else(|| Duration::from_millis(fastrand::u64(10..=50 * u64::from(attempts))));
        if ended + pause >= deadline {
            return NextAttempt::None(Err(fail(CallErrorKind::Deadline(client.options.deadline))));
        }
        if !client.budget.try_withdraw() {
            state.metrics.budget_exhausted.increment(1);
            let last = match result {
                Ok(response) => CallErrorKind::Status(response.status()),
                Err(e) => e.into(),
            };
            return NextAttempt::None(Err(fail(CallErrorKind::BudgetExhausted(Box::new(last)))));
        }
        NextAttempt::After(pause)
    }

    /// The error of a call the breaker refuses.
    #[cold]
    #[inline(never)]
    fn breaker_refused(
        &self,
        state: &ServiceState,
        attempts: u32,
        last_instance: Option<String>,
        refused: msakit_resilience::CallNotPermitted,
    ) -> CallError {
        state.metrics.export_breaker_state(state.breaker.state());
        call_error(
            self.service,
            attempts,
            last_instance,
            CallErrorKind::BreakerOpen(refused),
        )
    }

    /// The error of an attempt on an instance whose address makes no valid URL.
    #[cold]
    #[inline(never)]
    fn no_url(
        &self,
        state: &ServiceState,
        ticket: Ticket,
        instance: &Instance,
        attempts: u32,
        permit: msakit_resilience::circuit_breaker::OwnedPermit,
    ) -> CallError {
        self.client.finish(
            state,
            ticket,
            &instance.id,
            Duration::ZERO,
            AttemptEnd::Failed,
            Instant::now(),
        );
        permit.record(CallOutcome::Ignored);
        call_error(
            self.service,
            attempts,
            Some(instance.id.clone()),
            CallErrorKind::InvalidInstanceUrl(format!(
                "{}:{}{}",
                instance.host, instance.port, self.path
            )),
        )
    }
}

/// An attempt in flight on an instance, taken back from the balancer if the call is dropped
/// before the attempt finishes.
struct InFlight<'a> {
    client: &'a ServiceClient,
    state: &'a ServiceState,
    ticket: Ticket,
    instance: &'a str,
    finished: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.client.cancel(self.state, self.ticket, self.instance);
        }
    }
}

/// What follows a failed attempt.
enum NextAttempt {
    /// Another attempt, after this pause.
    After(Duration),
    /// None: the call answers this.
    None(Result<reqwest::Response, CallError>),
}

/// A failed call's error. Out of line, as every failure path is: the code of a call that
/// succeeds stays short.
#[cold]
#[inline(never)]
fn call_error(
    service: &str,
    attempts: u32,
    instance: Option<String>,
    kind: CallErrorKind,
) -> CallError {
    CallError {
        service: service.to_owned(),
        instance,
        attempts,
        kind,
    }
}

/// A failed attempt's `Retry-After` (whole seconds), if its answer said one.
#[cold]
#[inline(never)]
fn retry_after(result: &Result<reqwest::Response, AttemptError>) -> Option<Duration> {
    result
        .as_ref()
        .ok()?
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The `tracing` event of one attempt (at DEBUG), out of line.
#[inline(never)]
fn log_attempt(
    service: &str,
    instance: &str,
    attempt: u32,
    failed: bool,
    latency: Duration,
    breaker: &CircuitBreaker,
    trace_id: u128,
) {
    let outcome = if failed { "failure" } else { "success" };
    tracing::debug!(
        %service,
        %instance,
        attempt,
        outcome,
        latency_ms = latency.as_millis() as u64,
        breaker = %breaker.state(),
        trace_id = %format_args!("{trace_id:032x}"),
        "service call attempt"
    );
}

/// The deadline header's value: the milliseconds left.
fn deadline_value(remaining: Duration) -> HeaderValue {
    HeaderValue::from(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX))
}

/// A W3C `traceparent` value: version 00, the trace, this attempt's span, sampled.
fn traceparent(trace_id: u128, span_id: u64) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut value = *b"00-00000000000000000000000000000000-0000000000000000-01";
    // Two digits per byte, most significant first.
    let digits = |slots: &mut [u8], bytes: &[u8]| {
        for (pair, byte) in slots.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
    };
    digits(&mut value[3..35], &trace_id.to_be_bytes());
    digits(&mut value[36..52], &span_id.to_be_bytes());
    HeaderValue::from_bytes(&value).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_w3c_shaped() {
        let value = traceparent(0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331);
        assert_eq!(
            value.to_str().unwrap(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }
}
