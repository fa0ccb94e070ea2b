//! The one error type every direct `call` returns: the inner error or the reason a primitive
//! refused or cut the call.

use std::fmt;

use crate::{BulkheadFull, CallNotPermitted, DeadlineExceeded, Elapsed, RateLimited};

/// The error type of tower layers, as in tower itself.
///
/// Rejections are boxed values of this crate's rejection types ([`CallNotPermitted`],
/// [`BulkheadFull`], [`RateLimited`], [`Elapsed`], [`DeadlineExceeded`]); use `downcast_ref` to tell
/// them apart.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call through a resilience primitive (or a whole [`Policy`](crate::Policy)) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The call ran and returned this error.
    Inner(E),
    /// A circuit breaker rejected the call without running it.
    CallNotPermitted(CallNotPermitted),
    /// A bulkhead was full and the call could not wait for a slot.
    BulkheadFull(BulkheadFull),
    /// A rate limiter had no permit within the allowed wait.
    RateLimited(RateLimited),
    /// The call ran past its timeout and was cancelled.
    Timeout(Elapsed),
    /// Retrying ran past its overall deadline.
    DeadlineExceeded(DeadlineExceeded),
}

impl<E> Error<E> {
    /// The inner error, if the call ran and failed on its own.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// Whether a primitive refused to run the call at all (breaker open, bulkhead full, rate limited).
    ///
    /// Retrying such a call at once only adds load, so the default retry predicates skip them.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::CallNotPermitted(_) | Error::BulkheadFull(_) | Error::RateLimited(_)
        )
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Inner(e) => e.fmt(f),
            Error::CallNotPermitted(e) => e.fmt(f),
            Error::BulkheadFull(e) => e.fmt(f),
            Error::RateLimited(e) => e.fmt(f),
            Error::Timeout(e) => e.fmt(f),
            Error::DeadlineExceeded(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Inner(e) => Some(e),
            Error::CallNotPermitted(e) => Some(e),
            Error::BulkheadFull(e) => Some(e),
            Error::RateLimited(e) => Some(e),
            Error::Timeout(e) => Some(e),
            Error::DeadlineExceeded(e) => Some(e),
        }
    }
}

macro_rules! from_rejection {
    ($($ty:ident => $variant:ident),* $(,)?) => {$(
        impl<E> From<$ty> for Error<E> {
            fn from(e: $ty) -> Self {
                Error::$variant(e)
            }
        }
    )*};
}

from_rejection!(
    CallNotPermitted => CallNotPermitted,
    BulkheadFull => BulkheadFull,
    RateLimited => RateLimited,
    Elapsed => Timeout,
    DeadlineExceeded => DeadlineExceeded,
);
