//! Deciding whether a finished attempt should be retried.

use std::time::Duration;

use crate::{BoxError, BulkheadFull, CallNotPermitted, Error, RateLimited};

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Return this result.
    Done,
    /// Retry after the configured backoff.
    Retry,
    /// Retry after exactly this delay, as the server asked (`Retry-After`). A delay beyond
    /// `max_delay` ends the retries instead: waiting that long is not allowed, and retrying sooner
    /// than the server asked is rude.
    RetryAfter(Duration),
}

/// Decides per attempt, on errors *and* results (e.g. retry an `Ok` HTTP 503).
///
/// Closures `Fn(Result<&T, &E>) -> RetryDecision` implement it.
pub trait RetryOn<T, E> {
    /// The decision for this attempt's result.
    fn decide(&self, result: Result<&T, &E>) -> RetryDecision;
}

impl<T, E, F> RetryOn<T, E> for F
where
    F: Fn(Result<&T, &E>) -> RetryDecision,
{
    fn decide(&self, result: Result<&T, &E>) -> RetryDecision {
        self(result)
    }
}

/// Retry every error; the default for [`Retry`](crate::Retry).
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryOnError;

impl<T, E> RetryOn<T, E> for RetryOnError {
    fn decide(&self, result: Result<&T, &E>) -> RetryDecision {
        match result {
            Ok(_) => RetryDecision::Done,
            Err(_) => RetryDecision::Retry,
        }
    }
}

/// Retry failures and timeouts, but not rejections (open breaker, full bulkhead, rate limit):
/// retrying those at once only adds load. The default for a [`Policy`](crate::Policy).
///
/// Works on the direct API's [`Error`] and on the tower layers' [`BoxError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryOnTransient;

impl<T, E> RetryOn<T, Error<E>> for RetryOnTransient {
    fn decide(&self, result: Result<&T, &Error<E>>) -> RetryDecision {
        match result {
            Ok(_) => RetryDecision::Done,
            Err(e) if e.is_rejection() => RetryDecision::Done,
            Err(_) => RetryDecision::Retry,
        }
    }
}

impl<T> RetryOn<T, BoxError> for RetryOnTransient {
    fn decide(&self, result: Result<&T, &BoxError>) -> RetryDecision {
        match result {
            Ok(_) => RetryDecision::Done,
            Err(e)
                if e.is::<CallNotPermitted>()
                    || e.is::<BulkheadFull>()
                    || e.is::<RateLimited>() =>
            {
                RetryDecision::Done
            }
            Err(_) => RetryDecision::Retry,
        }
    }
}
