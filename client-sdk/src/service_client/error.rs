//! Why a call failed.

use std::time::Duration;

use reqwest::StatusCode;

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
    /// The caller's body could not be serialised (or, through the `tower` face, read);
    /// nothing was sent.
    #[error("the body cannot be serialised: {0}")]
    InvalidBody(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A request through the `tower` face whose URI names no service (no host).
    #[error("the request's URI names no service")]
    NoService,
}

impl CallErrorKind {
    /// The failure of the last attempt, looking through an exhausted budget.
    pub(super) fn last(&self) -> &CallErrorKind {
        match self {
            CallErrorKind::BudgetExhausted(last) => last.last(),
            kind => kind,
        }
    }

    pub(super) fn is_timeout(&self) -> bool {
        match self.last() {
            CallErrorKind::AttemptTimeout(_) | CallErrorKind::Deadline(_) => true,
            CallErrorKind::Transport(e) => e.is_timeout(),
            _ => false,
        }
    }
}

/// Why one attempt got no answer.
#[derive(Debug)]
pub(super) enum AttemptError {
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

/// A failed call's error. Out of line, as every failure path is: the code of a call that
/// succeeds stays short.
#[cold]
#[inline(never)]
pub(super) fn call_error(
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
