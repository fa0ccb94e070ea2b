//! What a circuit breaker reports to subscribers.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::CircuitState;

/// One thing that happened in a breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerEvent {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: CircuitBreakerEventKind,
}

/// The kinds of breaker events, as in Resilience4j.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CircuitBreakerEventKind {
    /// A call was classified a success.
    Success {
        /// How long it took.
        elapsed: Duration,
    },
    /// A call was classified a failure.
    Error {
        /// How long it took.
        elapsed: Duration,
    },
    /// A call was classified as not counting.
    Ignored {
        /// How long it took.
        elapsed: Duration,
    },
    /// A call was rejected without running.
    NotPermitted,
    /// The breaker changed state.
    StateTransition {
        /// The state before.
        from: CircuitState,
        /// The state after.
        to: CircuitState,
    },
    /// The failure rate reached the threshold.
    FailureRateExceeded {
        /// The failure rate, in percent.
        rate: f32,
    },
    /// The slow-call rate reached the threshold.
    SlowCallRateExceeded {
        /// The slow-call rate, in percent.
        rate: f32,
    },
    /// An operator reset the breaker.
    Reset,
}
