//! The attempts of one call: an instance picked, the request sent within the attempt timeout,
//! the outcome recorded, and a retry on another instance when the budget and deadline allow.

use std::time::{Duration, Instant};

use msakit_api::registry::Instance;
use msakit_resilience::CircuitBreaker;
use msakit_resilience::circuit_breaker::CallOutcome;
use reqwest::StatusCode;

use super::error::{AttemptError, call_error};
use super::headers::{DEADLINE, TRACEPARENT, deadline_value, traceparent};
use super::request::Answered;
use super::state::ServiceState;
use super::{CallError, CallErrorKind, ServiceClient, ServiceRequest};
use crate::picker::{AttemptEnd, Picked, Ticket, Tried};

impl ServiceRequest<'_> {
    /// Every attempt of the call. (`&mut`: a `ServiceRequest` is `Send` but not `Sync`.)
    pub(super) async fn attempts(&mut self) -> Result<reqwest::Response, CallError> {
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
            let span = tracing::debug_span!(
                target: crate::trace::TARGET,
                "call",
                otel.name = self.service,
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                msakit.service = self.service,
                msakit.instance = %instance.id,
                // Integers as i64: tracing-opentelemetry records u64 fields as text.
                msakit.attempt = i64::from(attempts),
                msakit.breaker = ?state.breaker.state(),
                http.request.method = %self.method,
                http.response.status_code = tracing::field::Empty,
                msakit.outcome = tracing::field::Empty,
            );
            crate::trace::adopt_remote_parent(
                &span,
                self.trace_id,
                self.parent_span,
                self.trace_flags,
            );
            // The attempt's own span when traces are recorded; else one made up here.
            let traceparent_value = crate::trace::traceparent_of(&span)
                .unwrap_or_else(|| traceparent(trace_id, fastrand::u64(1..), self.trace_flags));
            headers.insert(TRACEPARENT, traceparent_value);
            if let Some(body) = &self.body {
                *request.body_mut() = Some(body.clone().into());
            } else if let Some(stream) = self.stream.take() {
                *request.body_mut() = Some(stream);
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
            if self
                .stream_failed
                .as_ref()
                .is_some_and(|failed| failed.load(std::sync::atomic::Ordering::Relaxed))
            {
                // The caller's streamed body broke off: the instance is not to blame (the
                // in-flight guard cancels the attempt; the breaker ignores it).
                drop(in_flight);
                permit.record(CallOutcome::Ignored);
                return Err(fail(
                    attempts,
                    Some(instance.id.clone()),
                    CallErrorKind::InvalidBody("the request body failed while it was sent".into()),
                ));
            }
            if !span.is_disabled() {
                record_outcome(&span, &result);
            }
            drop(span);
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
    pub(super) fn retry_pause(
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
    pub(super) fn breaker_refused(
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
    pub(super) fn no_url(
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
pub(super) struct InFlight<'a> {
    pub(super) client: &'a ServiceClient,
    pub(super) state: &'a ServiceState,
    pub(super) ticket: Ticket,
    pub(super) instance: &'a str,
    pub(super) finished: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.client.cancel(self.state, self.ticket, self.instance);
        }
    }
}

/// An attempt's status and outcome on its span.
#[cold]
fn record_outcome(span: &tracing::Span, result: &Result<reqwest::Response, AttemptError>) {
    match result {
        Ok(response) => {
            let status = response.status();
            span.record("http.response.status_code", i64::from(status.as_u16()));
            let failed = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            span.record("msakit.outcome", if failed { "failure" } else { "success" });
            if failed {
                span.record("otel.status_code", "ERROR");
            }
        }
        Err(AttemptError::TimedOut(_)) => {
            span.record("msakit.outcome", "timeout");
            span.record("otel.status_code", "ERROR");
        }
        Err(_) => {
            span.record("msakit.outcome", "transport_error");
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// What follows a failed attempt.
pub(super) enum NextAttempt {
    /// Another attempt, after this pause.
    After(Duration),
    /// None: the call answers this.
    None(Result<reqwest::Response, CallError>),
}

/// A failed attempt's `Retry-After` (whole seconds), if its answer said one.
#[cold]
#[inline(never)]
pub(super) fn retry_after(result: &Result<reqwest::Response, AttemptError>) -> Option<Duration> {
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
pub(super) fn log_attempt(
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
