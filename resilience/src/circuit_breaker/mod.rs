//! Middleware that stops calling a dependency that keeps failing, and probes it before trusting it
//! again: the full Resilience4j circuit-breaker model.
//!
//! # States
//! CLOSED admits every call and records outcomes in a sliding window (count- or time-based). Once
//! the window holds `minimum_number_of_calls` and the failure rate or slow-call rate reaches its
//! threshold, the breaker trips to OPEN, which rejects calls at once for
//! `wait_duration_in_open_state` (optionally growing on repeated trips). Then HALF_OPEN admits
//! exactly `permitted_number_of_calls_in_half_open_state` probes (the rest are rejected, never
//! queued); their verdict closes or reopens the breaker. A probe that never returns is bounded by
//! `max_wait_duration_in_half_open_state`. Operators can force DISABLED (always admit, record
//! nothing), FORCED_OPEN (always reject) and METRICS_ONLY (always admit, record, never trip).
//!
//! # Hot path
//! In CLOSED, admitting a call is two atomic loads; recording it is one `fetch_add`, one `swap`
//! and a few loads, plus the threshold check when the window's counts changed. There is no lock
//! and no allocation: the one mutex serialises state *transitions* only, which are rare by nature.
//! The clock is read only when slow calls are tracked, the window is time-based, or someone
//! subscribed to events. Slow calls and time windows are timed on the coarse clock when their
//! spans are a second or more (see [`crate::clock`]): two reads cost about 7 ns, where two
//! precise ones cost about 48.

mod classify;
mod config;
mod error;
mod event;
mod layer;
mod window;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use classify::{CallOutcome, Classify, FailOnError};
pub use config::{CircuitBreakerConfig, OpenStateBackoff, SlidingWindowType};
pub use error::CallNotPermitted;
pub use event::{CircuitBreakerEvent, CircuitBreakerEventKind};
pub use layer::{CircuitBreakerLayer, CircuitBreakerService, ResponseFuture};

use crate::clock::Clock;
use crate::events::EventPublisher;
use crate::{Error, EventStream, InvalidConfig};
use window::{CountWindow, Outcome, TimeWindow, Window, WindowCounts};

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CircuitState {
    /// Calls flow and are measured.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A limited number of probe calls decide whether to close or reopen.
    HalfOpen,
    /// Calls flow and nothing is measured (set by an operator).
    Disabled,
    /// Calls are rejected until an operator changes the state.
    ForcedOpen,
    /// Calls flow and are measured, but the breaker never trips (set by an operator).
    MetricsOnly,
}

impl CircuitState {
    const ALL: [CircuitState; 6] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::Disabled,
        CircuitState::ForcedOpen,
        CircuitState::MetricsOnly,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "CLOSED",
            CircuitState::Open => "OPEN",
            CircuitState::HalfOpen => "HALF_OPEN",
            CircuitState::Disabled => "DISABLED",
            CircuitState::ForcedOpen => "FORCED_OPEN",
            CircuitState::MetricsOnly => "METRICS_ONLY",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state word packs a generation counter above the state, so that an outcome recorded for a
/// call admitted under an earlier state (or an earlier HALF_OPEN round) is recognised and dropped.
fn pack(generation: u64, state: CircuitState) -> u64 {
    generation << 8 | state as u64
}

fn unpack(word: u64) -> (u64, CircuitState) {
    (word >> 8, CircuitState::ALL[(word & 0xff) as usize])
}

/// The low half of the HALF_OPEN permit word: permits left in the round.
const PERMITS: u64 = 0xffff_ffff;

/// The round a generation opens, as kept in the high half of the permit word.
fn round(generation: u64) -> u64 {
    generation & 0xffff_ffff
}

fn permits_round(permits: u64) -> u64 {
    permits >> 32
}

fn milli_percent(percent: f32) -> u64 {
    (f64::from(percent) * 1000.0).round() as u64
}

/// A circuit breaker. Cheap to clone; clones share state.
///
/// `C` classifies results into success, failure or ignored; the default counts every `Err` as a
/// failure. See [`with_classifier`](Self::with_classifier).
#[derive(Debug)]
pub struct CircuitBreaker<C = FailOnError> {
    shared: Arc<Shared>,
    classifier: C,
}

impl<C: Clone> Clone for CircuitBreaker<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            classifier: self.classifier.clone(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    config: CircuitBreakerConfig,
    /// `config.minimum_number_of_calls`, widened once.
    minimum_calls: u64,
    /// The thresholds in thousandths of a percent, for an exact integer comparison.
    failure_threshold: u64,
    slow_call_threshold: u64,
    /// Generation and state, see [`pack`].
    state: AtomicU64,
    /// Outcomes while CLOSED or METRICS_ONLY.
    closed: Window,
    /// Outcomes of the probes of the current HALF_OPEN round.
    half_open: CountWindow,
    /// Probe permits still free in the current HALF_OPEN round.
    half_open_permits: AtomicU64,
    /// When OPEN ends, in nanoseconds since `origin`.
    open_until: AtomicU64,
    /// When the current state was entered, in nanoseconds since `origin`.
    entered_at: AtomicU64,
    origin: Instant,
    /// Times calls for the slow-call threshold: coarse for a threshold of a second or more.
    slow_call_clock: Clock,
    /// `config.slow_call_duration_threshold` in nanoseconds on that clock; `u64::MAX` when slow
    /// calls are not tracked.
    slow_call_nanos: u64,
    /// Calls rejected since creation or the last reset.
    not_permitted: AtomicU64,
    /// Serialises transitions and holds what only they touch.
    transitions: Mutex<Transitions>,
    events: EventPublisher<CircuitBreakerEvent>,
}

#[derive(Debug, Default)]
struct Transitions {
    /// Trips since the breaker was last closed; drives `open_state_backoff`.
    consecutive_trips: u32,
}

/// A point-in-time view of a breaker's state and window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreakerMetrics {
    /// The breaker's name.
    pub name: String,
    /// The current state.
    pub state: CircuitState,
    /// Failure rate in percent over the current window; `None` until the window holds the minimum
    /// number of calls.
    pub failure_rate: Option<f32>,
    /// Slow-call rate in percent; `None` until the window holds the minimum number of calls.
    pub slow_call_rate: Option<f32>,
    /// Calls in the current window (the HALF_OPEN probes while half-open).
    pub buffered_calls: u64,
    /// Failed calls in the window.
    pub failed_calls: u64,
    /// Successful calls in the window.
    pub successful_calls: u64,
    /// Slow calls in the window, failed or not.
    pub slow_calls: u64,
    /// Slow calls in the window that also failed.
    pub slow_failed_calls: u64,
    /// Calls rejected since creation or the last reset.
    pub not_permitted_calls: u64,
}

impl CircuitBreaker<FailOnError> {
    /// A breaker named `name` (the name appears in errors, events and metrics).
    pub fn new(
        name: impl Into<Arc<str>>,
        config: CircuitBreakerConfig,
    ) -> Result<Self, InvalidConfig> {
        config.validate()?;
        let origin = Instant::now();
        let closed = match config.sliding_window_type {
            SlidingWindowType::CountBased => {
                Window::Count(CountWindow::new(config.sliding_window_size))
            }
            SlidingWindowType::TimeBased => {
                Window::Time(TimeWindow::new(config.sliding_window_size))
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.into(),
                minimum_calls: config.minimum_number_of_calls.into(),
                failure_threshold: milli_percent(config.failure_rate_threshold),
                slow_call_threshold: milli_percent(config.slow_call_rate_threshold),
                state: AtomicU64::new(pack(0, CircuitState::Closed)),
                closed,
                half_open: CountWindow::new(config.permitted_number_of_calls_in_half_open_state),
                half_open_permits: AtomicU64::new(0),
                open_until: AtomicU64::new(0),
                entered_at: AtomicU64::new(0),
                origin,
                slow_call_clock: config
                    .slow_call_duration_threshold
                    .map_or_else(Clock::precise, Clock::for_spans_of),
                slow_call_nanos: config.slow_call_duration_threshold.map_or(u64::MAX, |t| {
                    t.as_nanos().min(u128::from(u64::MAX - 1)) as u64
                }),
                not_permitted: AtomicU64::new(0),
                transitions: Mutex::new(Transitions::default()),
                events: EventPublisher::new(),
                config,
            }),
            classifier: FailOnError,
        })
    }
}

impl<C> CircuitBreaker<C> {
    /// The same breaker (shared state) with another classifier.
    pub fn with_classifier<D>(&self, classifier: D) -> CircuitBreaker<D> {
        CircuitBreaker {
            shared: Arc::clone(&self.shared),
            classifier,
        }
    }

    /// Runs `f` if the breaker admits it, and records the classified outcome.
    ///
    /// A future dropped before it finishes (cancelled) records nothing and gives its HALF_OPEN
    /// probe slot back.
    pub async fn call<F, Fut, T, E>(&self, f: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        let permit = self.try_acquire()?;
        let result = f().await;
        permit.record(self.classifier.classify(result.as_ref()));
        result.map_err(Error::Inner)
    }

    /// Asks for permission to make one call. Record the outcome on the permit; dropping it
    /// unrecorded releases it (a cancelled call).
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<Permit<'_>, CallNotPermitted> {
        match self.shared.acquire() {
            Ok(ticket) => Ok(Permit {
                shared: &self.shared,
                ticket,
                armed: true,
            }),
            Err(rejected) => Err(self.shared.rejection(rejected)),
        }
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a handle to the breaker
    /// (for futures that outlive the borrow).
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, CallNotPermitted> {
        match self.shared.acquire() {
            Ok(ticket) => Ok(OwnedPermit {
                shared: Arc::clone(&self.shared),
                ticket,
                armed: true,
            }),
            Err(rejected) => Err(self.shared.rejection(rejected)),
        }
    }

    /// This breaker as a `tower::Layer`.
    pub fn layer(&self) -> CircuitBreakerLayer<C>
    where
        C: Clone,
    {
        CircuitBreakerLayer::new(self.clone())
    }

    /// The classifier in use.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The breaker's configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        unpack(self.shared.state.load(Ordering::Acquire)).1
    }

    /// A snapshot of state and window.
    pub fn metrics(&self) -> CircuitBreakerMetrics {
        self.shared.metrics()
    }

    /// Subscribes to this breaker's events.
    pub fn events(&self) -> EventStream<CircuitBreakerEvent> {
        self.shared.events.subscribe()
    }

    /// Closes the breaker with an empty window.
    pub fn transition_to_closed(&self) {
        self.shared.transition(None, CircuitState::Closed);
    }

    /// Opens the breaker for the configured wait.
    pub fn transition_to_open(&self) {
        self.shared.transition(None, CircuitState::Open);
    }

    /// Moves to HALF_OPEN with a fresh set of probe permits.
    pub fn transition_to_half_open(&self) {
        self.shared.transition(None, CircuitState::HalfOpen);
    }

    /// Admits everything and records nothing, until another transition.
    pub fn transition_to_disabled(&self) {
        self.shared.transition(None, CircuitState::Disabled);
    }

    /// Rejects everything, until another transition.
    pub fn transition_to_forced_open(&self) {
        self.shared.transition(None, CircuitState::ForcedOpen);
    }

    /// Admits and records everything but never trips, until another transition.
    pub fn transition_to_metrics_only(&self) {
        self.shared.transition(None, CircuitState::MetricsOnly);
    }

    /// Back to a fresh CLOSED breaker: empty window, no trip history, rejection count zero.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

/// Permission to make one call, from [`CircuitBreaker::try_acquire`].
#[must_use = "record the call's outcome on the permit"]
#[derive(Debug)]
pub struct Permit<'a> {
    shared: &'a Arc<Shared>,
    ticket: Ticket,
    /// Still owes a record or a release.
    armed: bool,
}

impl Permit<'_> {
    /// Records how the call went.
    #[inline(always)]
    pub fn record(mut self, outcome: CallOutcome) {
        self.armed = false;
        self.shared.record(self.ticket, outcome);
    }
}

impl Drop for Permit<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.armed {
            self.shared.release(self.ticket);
        }
    }
}

/// Permission to make one call, owning a handle to its breaker.
#[must_use = "record the call's outcome on the permit"]
#[derive(Debug)]
pub struct OwnedPermit {
    shared: Arc<Shared>,
    ticket: Ticket,
    /// Still owes a record or a release.
    armed: bool,
}

impl OwnedPermit {
    /// Records how the call went.
    #[inline(always)]
    pub fn record(mut self, outcome: CallOutcome) {
        self.armed = false;
        self.shared.record(self.ticket, outcome);
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if self.armed {
            self.shared.release(self.ticket);
        }
    }
}

/// What an admitted call carries until it is recorded: two words, so that handing it around
/// stays in registers.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    /// The state word at admission: generation and state.
    word: u64,
    /// When the call started, if it is timed: see [`Ticket::timing`]. One word, so a ticket
    /// stays two and is returned in registers.
    start: u64,
}

/// When a call started, and on which clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timing {
    /// Not timed: slow calls are not tracked and nobody subscribed to events.
    Untimed,
    /// On the precise clock, nanoseconds since the breaker's origin (events carry durations).
    Precise(u64),
    /// On the slow-call clock, for the threshold only.
    ForSlowCalls(u64),
}

/// In [`Ticket::start`], marks a reading of the slow-call clock.
const SLOW_CALL_CLOCK: u64 = 1 << 63;

impl Timing {
    /// Packed into a ticket: zero when untimed, else the reading plus one, tagged with its clock.
    #[inline(always)]
    fn pack(self) -> u64 {
        match self {
            Timing::Untimed => 0,
            Timing::Precise(nanos) => (nanos + 1) & !SLOW_CALL_CLOCK,
            Timing::ForSlowCalls(nanos) => (nanos + 1) | SLOW_CALL_CLOCK,
        }
    }
}

impl Ticket {
    #[inline(always)]
    fn timing(self) -> Timing {
        match self.start {
            0 => Timing::Untimed,
            tagged if tagged & SLOW_CALL_CLOCK != 0 => {
                Timing::ForSlowCalls((tagged & !SLOW_CALL_CLOCK) - 1)
            }
            nanos => Timing::Precise(nanos - 1),
        }
    }

    fn generation(self) -> u64 {
        unpack(self.word).0
    }

    fn state(self) -> CircuitState {
        unpack(self.word).1
    }
}

/// Why a call was not admitted; turned into a [`CallNotPermitted`] off the hot path.
#[derive(Debug, Clone, Copy)]
struct Rejected {
    state: CircuitState,
    retry_after: Option<Duration>,
}

impl Shared {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }

    /// Admits or rejects a call. The states that admit everything are decided inline; the rest
    /// in [`acquire_slow`](Self::acquire_slow).
    #[inline(always)]
    fn acquire(self: &Arc<Self>) -> Result<Ticket, Rejected> {
        let word = self.state.load(Ordering::Acquire);
        let state = word & 0xff;
        if state == CircuitState::Closed as u64
            || state == CircuitState::MetricsOnly as u64
            || state == CircuitState::Disabled as u64
        {
            return Ok(self.admit(word));
        }
        self.acquire_slow()
    }

    #[inline(always)]
    fn admit(&self, word: u64) -> Ticket {
        Ticket {
            word,
            start: if self.events.is_observed() {
                Timing::Precise(self.nanos(Instant::now())).pack()
            } else if self.slow_call_nanos != u64::MAX {
                Timing::ForSlowCalls(self.slow_call_clock.nanos()).pack()
            } else {
                0
            },
        }
    }

    #[inline(never)]
    fn acquire_slow(self: &Arc<Self>) -> Result<Ticket, Rejected> {
        loop {
            let word = self.state.load(Ordering::Acquire);
            let (generation, state) = unpack(word);
            match state {
                CircuitState::Closed | CircuitState::MetricsOnly | CircuitState::Disabled => {
                    return Ok(self.admit(word));
                }
                CircuitState::ForcedOpen => return Err(self.reject(state, None)),
                CircuitState::Open => {
                    let now = Instant::now();
                    let until = self.instant(self.open_until.load(Ordering::Acquire));
                    if now < until {
                        return Err(self.reject(state, Some(until - now)));
                    }
                    self.transition(Some(generation), CircuitState::HalfOpen);
                }
                CircuitState::HalfOpen => {
                    // Permits are tagged with their round's generation, so a permit can only be
                    // taken from (or given back to) the round it belongs to.
                    let took = self.half_open_permits.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |p| {
                            (permits_round(p) == round(generation) && p & PERMITS > 0)
                                .then(|| p - 1)
                        },
                    );
                    match took {
                        Ok(_) => return Ok(self.admit(word)),
                        Err(p) if permits_round(p) != round(generation) => continue,
                        Err(_) => {}
                    }
                    let max_wait = self.config.max_wait_duration_in_half_open_state;
                    let entered = self.instant(self.entered_at.load(Ordering::Acquire));
                    if max_wait.is_zero() || Instant::now() < entered + max_wait {
                        return Err(self.reject(state, None));
                    }
                    // The probes have had their time; give up on them and open again.
                    self.transition(Some(generation), CircuitState::Open);
                }
            }
        }
    }

    /// Counts a rejection and tells subscribers.
    fn reject(&self, state: CircuitState, retry_after: Option<Duration>) -> Rejected {
        self.not_permitted.fetch_add(1, Ordering::Relaxed);
        self.publish(CircuitBreakerEventKind::NotPermitted);
        Rejected { state, retry_after }
    }

    #[cold]
    fn rejection(&self, rejected: Rejected) -> CallNotPermitted {
        CallNotPermitted {
            name: Arc::clone(&self.name),
            state: rejected.state,
            retry_after: rejected.retry_after,
        }
    }

    #[inline]
    fn publish(&self, kind: CircuitBreakerEventKind) {
        self.events.publish(|| CircuitBreakerEvent {
            breaker: Arc::clone(&self.name),
            at: Instant::now(),
            kind,
        });
    }

    /// A permit dropped without a record: give a probe slot back to its own round.
    fn release(&self, ticket: Ticket) {
        if ticket.state() == CircuitState::HalfOpen {
            let round = round(ticket.generation());
            let _ = self
                .half_open_permits
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                    (permits_round(p) == round).then(|| p + 1)
                });
        }
    }

    #[inline]
    fn generation(&self) -> u64 {
        unpack(self.state.load(Ordering::Acquire)).0
    }

    /// Records an outcome. A plain success in CLOSED with nothing to tell, faster than the
    /// slow-call threshold and landing in a ring full of such successes, changes nothing and is
    /// decided inline; the rest goes to [`record_slow`](Self::record_slow).
    #[inline(always)]
    fn record(self: &Arc<Self>, ticket: Ticket, outcome: CallOutcome) {
        if outcome == CallOutcome::Success
            && ticket.word & 0xff == CircuitState::Closed as u64
            && let Window::Count(window) = &self.closed
            && window.all_successes()
            && !self.events.is_observed()
        {
            match ticket.timing() {
                Timing::Untimed => return,
                Timing::ForSlowCalls(start)
                    if self.slow_call_clock.nanos().saturating_sub(start)
                        < self.slow_call_nanos =>
                {
                    return;
                }
                _ => {}
            }
        }
        self.record_slow(ticket, outcome);
    }

    #[inline(never)]
    fn record_slow(self: &Arc<Self>, ticket: Ticket, outcome: CallOutcome) {
        let state = ticket.state();
        if state == CircuitState::Disabled {
            return;
        }
        let elapsed = match ticket.timing() {
            Timing::Untimed => None,
            Timing::Precise(start) => Some(self.nanos(Instant::now()).saturating_sub(start)),
            Timing::ForSlowCalls(start) => Some(self.slow_call_clock.nanos().saturating_sub(start)),
        }
        .map(Duration::from_nanos);
        let failed = match outcome {
            CallOutcome::Success => false,
            CallOutcome::Failure => true,
            CallOutcome::Ignored => {
                self.publish(CircuitBreakerEventKind::Ignored {
                    elapsed: elapsed.unwrap_or_default(),
                });
                self.release(ticket);
                return;
            }
        };
        if self.events.is_observed() {
            let elapsed = elapsed.unwrap_or_default();
            self.publish(if failed {
                CircuitBreakerEventKind::Error { elapsed }
            } else {
                CircuitBreakerEventKind::Success { elapsed }
            });
        }
        if self.generation() != ticket.generation() {
            // Admitted under a state that has since ended: it belongs to no current window.
            return;
        }
        let slow = matches!(
            (elapsed, self.config.slow_call_duration_threshold),
            (Some(elapsed), Some(threshold)) if elapsed >= threshold
        );
        let outcome = Outcome::new(failed, slow);
        match state {
            CircuitState::Closed => {
                if let Some(counts) = self.closed.record(outcome) {
                    if self.exceeded(counts, self.minimum_calls) {
                        self.transition(Some(ticket.generation()), CircuitState::Open);
                    }
                }
            }
            CircuitState::MetricsOnly => {
                self.closed.record(outcome);
            }
            CircuitState::HalfOpen => {
                let counts = self
                    .half_open
                    .record(outcome)
                    .unwrap_or_else(|| self.half_open.counts());
                let probes = u64::from(self.config.permitted_number_of_calls_in_half_open_state);
                if counts.calls >= probes {
                    let to = if self.exceeded(counts, probes) {
                        CircuitState::Open
                    } else {
                        CircuitState::Closed
                    };
                    self.transition(Some(ticket.generation()), to);
                }
            }
            CircuitState::Disabled | CircuitState::Open | CircuitState::ForcedOpen => {}
        }
    }

    /// Whether a threshold is reached (with at least `minimum` calls); publishes the matching
    /// event when it is. Compares in integers, so a rate exactly at the threshold trips.
    #[inline]
    fn exceeded(&self, counts: WindowCounts, minimum: u64) -> bool {
        if counts.calls < minimum || counts.calls == 0 {
            return false;
        }
        let reached = |part: u64, threshold: u64| part * 100_000 >= threshold * counts.calls;
        if reached(counts.failed, self.failure_threshold) {
            let rate = counts.failure_rate(minimum).unwrap_or(100.0);
            self.publish(CircuitBreakerEventKind::FailureRateExceeded { rate });
            return true;
        }
        if reached(counts.slow, self.slow_call_threshold) {
            let rate = counts.slow_call_rate(minimum).unwrap_or(100.0);
            self.publish(CircuitBreakerEventKind::SlowCallRateExceeded { rate });
            return true;
        }
        false
    }

    /// Moves to `to`. With `expected` set, only if the generation is still `expected` (an automatic
    /// transition racing another one loses quietly). Returns whether the state changed.
    fn transition(self: &Arc<Self>, expected: Option<u64>, to: CircuitState) -> bool {
        let mut transitions = self
            .transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (generation, from) = unpack(self.state.load(Ordering::Acquire));
        if expected.is_some_and(|g| g != generation) || from == to {
            return false;
        }
        let now = Instant::now();
        let mut timer = None;
        match to {
            CircuitState::Closed | CircuitState::MetricsOnly => {
                self.closed.reset();
                if to == CircuitState::Closed {
                    transitions.consecutive_trips = 0;
                }
            }
            CircuitState::Open => {
                transitions.consecutive_trips = transitions.consecutive_trips.saturating_add(1);
                let wait = self.config.open_wait(transitions.consecutive_trips);
                self.open_until
                    .store(self.nanos(now + wait), Ordering::Release);
                if self
                    .config
                    .automatic_transition_from_open_to_half_open_enabled
                {
                    timer = Some((wait, CircuitState::HalfOpen));
                }
            }
            CircuitState::HalfOpen => {
                self.half_open.reset();
                let probes = u64::from(self.config.permitted_number_of_calls_in_half_open_state);
                self.half_open_permits
                    .store(round(generation + 1) << 32 | probes, Ordering::Release);
                let max_wait = self.config.max_wait_duration_in_half_open_state;
                if !max_wait.is_zero() {
                    timer = Some((max_wait, CircuitState::Open));
                }
            }
            CircuitState::Disabled | CircuitState::ForcedOpen => {}
        }
        self.entered_at.store(self.nanos(now), Ordering::Release);
        let next = generation + 1;
        self.state.store(pack(next, to), Ordering::Release);
        drop(transitions);
        self.publish(CircuitBreakerEventKind::StateTransition { from, to });
        if let Some((after, to)) = timer {
            self.schedule(next, after, to);
        }
        true
    }

    /// Moves to `to` after `after`, unless the breaker has left generation `generation` by then.
    /// Without a Tokio runtime the next call makes the same move instead.
    fn schedule(self: &Arc<Self>, generation: u64, after: Duration, to: CircuitState) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Shared> = Arc::downgrade(self);
        runtime.spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(shared) = weak.upgrade() {
                shared.transition(Some(generation), to);
            }
        });
    }

    fn reset(self: &Arc<Self>) {
        let mut transitions = self
            .transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (generation, from) = unpack(self.state.load(Ordering::Acquire));
        self.closed.reset();
        transitions.consecutive_trips = 0;
        self.not_permitted.store(0, Ordering::Relaxed);
        self.entered_at
            .store(self.nanos(Instant::now()), Ordering::Release);
        self.state.store(
            pack(generation + 1, CircuitState::Closed),
            Ordering::Release,
        );
        drop(transitions);
        self.publish(CircuitBreakerEventKind::Reset);
        if from != CircuitState::Closed {
            self.publish(CircuitBreakerEventKind::StateTransition {
                from,
                to: CircuitState::Closed,
            });
        }
    }

    fn metrics(&self) -> CircuitBreakerMetrics {
        let (_, state) = unpack(self.state.load(Ordering::Acquire));
        let (counts, minimum) = if state == CircuitState::HalfOpen {
            (
                self.half_open.counts(),
                u64::from(self.config.permitted_number_of_calls_in_half_open_state),
            )
        } else {
            (self.closed.counts(), self.minimum_calls)
        };
        CircuitBreakerMetrics {
            name: self.name.to_string(),
            state,
            failure_rate: counts.failure_rate(minimum),
            slow_call_rate: counts.slow_call_rate(minimum),
            buffered_calls: counts.calls,
            failed_calls: counts.failed,
            successful_calls: counts.calls - counts.failed.min(counts.calls),
            slow_calls: counts.slow,
            slow_failed_calls: counts.slow_failed,
            not_permitted_calls: self.not_permitted.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(config: CircuitBreakerConfig) -> CircuitBreaker {
        CircuitBreaker::new("test", config).unwrap()
    }

    fn small() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            sliding_window_size: 4,
            minimum_number_of_calls: 4,
            permitted_number_of_calls_in_half_open_state: 2,
            wait_duration_in_open_state: Duration::from_secs(10),
            ..Default::default()
        }
    }

    fn record(b: &CircuitBreaker, outcome: CallOutcome) {
        b.try_acquire().unwrap().record(outcome);
    }

    #[test]
    fn state_word_round_trips() {
        for state in CircuitState::ALL {
            assert_eq!(unpack(pack(12345, state)), (12345, state));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn trips_at_the_threshold_and_not_before_the_minimum() {
        let b = breaker(small());
        record(&b, CallOutcome::Failure);
        record(&b, CallOutcome::Failure);
        record(&b, CallOutcome::Success);
        assert_eq!(b.state(), CircuitState::Closed, "3 calls < minimum 4");
        record(&b, CallOutcome::Success);
        assert_eq!(b.state(), CircuitState::Open, "2 of 4 failed = 50% >= 50%");
    }

    #[tokio::test(start_paused = true)]
    async fn ignored_outcomes_do_not_count() {
        let b = breaker(small());
        for _ in 0..10 {
            record(&b, CallOutcome::Ignored);
        }
        assert_eq!(b.metrics().buffered_calls, 0);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_trip_the_breaker() {
        let b = breaker(CircuitBreakerConfig {
            slow_call_rate_threshold: 50.0,
            slow_call_duration_threshold: Some(Duration::from_millis(100)),
            ..small()
        });
        for _ in 0..2 {
            let permit = b.try_acquire().unwrap();
            tokio::time::advance(Duration::from_millis(150)).await;
            permit.record(CallOutcome::Success);
        }
        record(&b, CallOutcome::Success);
        assert_eq!(b.state(), CircuitState::Closed);
        record(&b, CallOutcome::Success);
        assert_eq!(b.state(), CircuitState::Open);
    }

    /// A threshold of a second or more is timed on the coarse clock, in real time; a slow success
    /// landing in a ring full of fast ones must still be counted (it takes the inline path's
    /// exit, not its shortcut).
    #[test]
    fn a_slow_call_on_the_coarse_clock_is_counted_after_a_ring_of_fast_ones() {
        let b = breaker(CircuitBreakerConfig {
            sliding_window_size: 2,
            minimum_number_of_calls: 2,
            slow_call_rate_threshold: 50.0,
            slow_call_duration_threshold: Some(Duration::from_secs(1)),
            ..Default::default()
        });
        assert!(b.shared.slow_call_clock.is_coarse());
        record(&b, CallOutcome::Success);
        record(&b, CallOutcome::Success);
        assert_eq!(b.metrics().slow_calls, 0);
        let permit = b.try_acquire().unwrap();
        // One coarse tick (≤ 10 ms) may be lost at each end.
        std::thread::sleep(Duration::from_millis(1030));
        permit.record(CallOutcome::Success);
        assert_eq!(b.metrics().slow_calls, 1);
        assert_eq!(b.state(), CircuitState::Open, "1 slow of 2 = 50%");
    }

    #[tokio::test(start_paused = true)]
    async fn open_rejects_with_the_remaining_wait_then_half_opens_on_the_next_call() {
        let b = breaker(small());
        b.transition_to_open();
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.state(), CircuitState::Open);
        assert_eq!(err.name(), "test");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            b.try_acquire().unwrap_err().retry_after(),
            Some(Duration::from_secs(6))
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = b.try_acquire().unwrap();
        assert_eq!(b.state(), CircuitState::HalfOpen);
        probe.record(CallOutcome::Success);
        assert_eq!(b.metrics().not_permitted_calls, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_closes_on_good_probes_and_reopens_on_bad_ones() {
        let b = breaker(small());
        b.transition_to_half_open();
        record(&b, CallOutcome::Success);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        record(&b, CallOutcome::Success);
        assert_eq!(b.state(), CircuitState::Closed);

        b.transition_to_half_open();
        record(&b, CallOutcome::Success);
        record(&b, CallOutcome::Failure);
        assert_eq!(b.state(), CircuitState::Open, "1 of 2 failed = 50%");
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_rejects_the_excess_and_dropped_permits_come_back() {
        let b = breaker(small());
        b.transition_to_half_open();
        let first = b.try_acquire().unwrap();
        let second = b.try_acquire().unwrap();
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.state(), CircuitState::HalfOpen);
        assert_eq!(err.retry_after(), None);
        drop(first);
        let third = b.try_acquire().unwrap();
        second.record(CallOutcome::Success);
        third.record(CallOutcome::Success);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn operator_states() {
        let b = breaker(small());
        b.transition_to_forced_open();
        assert_eq!(
            b.try_acquire().unwrap_err().state(),
            CircuitState::ForcedOpen
        );
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(b.try_acquire().is_err(), "forced open never half-opens");

        b.transition_to_disabled();
        for _ in 0..10 {
            record(&b, CallOutcome::Failure);
        }
        assert_eq!(b.state(), CircuitState::Disabled);
        assert_eq!(b.metrics().buffered_calls, 0);

        b.transition_to_metrics_only();
        for _ in 0..10 {
            record(&b, CallOutcome::Failure);
        }
        assert_eq!(b.state(), CircuitState::MetricsOnly);
        assert_eq!(b.metrics().failure_rate, Some(100.0));

        b.reset();
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.metrics().buffered_calls, 0);
        assert_eq!(b.metrics().not_permitted_calls, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_from_an_earlier_state_are_dropped() {
        let b = breaker(small());
        let stale = b.try_acquire().unwrap();
        b.transition_to_open();
        b.transition_to_closed();
        stale.record(CallOutcome::Failure);
        assert_eq!(b.metrics().buffered_calls, 0);
    }
}
