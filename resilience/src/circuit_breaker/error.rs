//! The error of a call the breaker refused to run.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::CircuitState;

/// The breaker refused a call without running it.
///
/// It says which breaker, in which state, and (when known) how long until it admits a call again,
/// which callers can pass on as `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallNotPermitted {
    pub(crate) name: Arc<str>,
    pub(crate) state: CircuitState,
    pub(crate) retry_after: Option<Duration>,
}

impl CallNotPermitted {
    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state that rejected the call: OPEN, FORCED_OPEN or HALF_OPEN (all probes in flight).
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// How long until the breaker admits a call again, when it can be known: the rest of the OPEN
    /// wait. `None` in FORCED_OPEN (until an operator acts) and HALF_OPEN (until probes finish).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CallNotPermitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker '{}' is {} and does not permit further calls",
            self.name, self.state
        )?;
        match (self.state, self.retry_after) {
            (_, Some(after)) => write!(f, "; next call admitted in {} ms", after.as_millis()),
            (CircuitState::HalfOpen, None) => write!(f, "; all half-open probes are in flight"),
            (CircuitState::ForcedOpen, None) => {
                write!(f, "; it stays open until an operator closes it")
            }
            _ => Ok(()),
        }
    }
}

impl std::error::Error for CallNotPermitted {}
