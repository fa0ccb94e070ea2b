//! Deciding whether a finished call counts as a success, a failure or neither.

/// How a finished call counts towards the breaker's failure rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The call worked.
    Success,
    /// The call failed in a way that says the dependency is unhealthy (a 5xx, a timeout).
    Failure,
    /// The call says nothing about the dependency's health (a 4xx, a cancelled request): it is
    /// not counted at all.
    Ignored,
}

/// Classifies a call's result, on errors *and* on successful values (e.g. an HTTP 503 response
/// that is an `Ok` at the transport level).
///
/// Closures `Fn(Result<&T, &E>) -> CallOutcome` implement it.
pub trait Classify<T, E> {
    /// How this result counts.
    fn classify(&self, result: Result<&T, &E>) -> CallOutcome;
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(Result<&T, &E>) -> CallOutcome,
{
    #[inline]
    fn classify(&self, result: Result<&T, &E>) -> CallOutcome {
        self(result)
    }
}

/// The default classifier: every `Ok` is a success and every `Err` a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailOnError;

impl<T, E> Classify<T, E> for FailOnError {
    #[inline]
    fn classify(&self, result: Result<&T, &E>) -> CallOutcome {
        match result {
            Ok(_) => CallOutcome::Success,
            Err(_) => CallOutcome::Failure,
        }
    }
}
