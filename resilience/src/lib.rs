//! Fault-tolerance primitives for calls between services: a circuit breaker, retry with backoff and a
//! retry budget, timeout, bulkhead and rate limiter, plus a [`Policy`] that composes them in the
//! standard order.
//!
//! Every primitive comes in the same shape:
//!
//! - a serde-deserialisable config struct with documented defaults and a `validate` step that names
//!   the offending field ([`InvalidConfig`]), so services can configure it from YAML;
//! - a handle that is `Clone + Send + Sync` (clones share state) with a direct async API,
//!   `primitive.call(|| future).await`, returning [`Error`];
//! - a `tower::Layer` for use in service stacks, whose errors are boxed like tower's own;
//! - a metrics snapshot (`metrics()`) and a subscribable event stream (`events()`).
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use msakit_resilience::{CircuitBreaker, CircuitBreakerConfig};
//!
//! let breaker = CircuitBreaker::new("payments", CircuitBreakerConfig::default())?;
//! let answer = breaker.call(|| async { Ok::<_, std::io::Error>(42) }).await?;
//! assert_eq!(answer, 42);
//! # Ok(()) }
//! ```
//!
//! Waits and backoffs run on `tokio::time`; windows, budgets, rate limits and slow-call timing
//! read Tokio's clock too, or a coarse clock (3 ns a read instead of 24) for spans of a second or
//! more. A primitive created while Tokio's clock is paused reads Tokio's clock only, so all of it
//! can be tested deterministically with `tokio::time::pause()` (or `start_paused`).

mod admission;
pub mod bulkhead;
pub mod circuit_breaker;
mod clock;
mod deadline;
mod error;
mod events;
mod invalid_config;
pub mod policy;
pub mod rate_limiter;
pub mod retry;
mod sliding_counters;
pub mod timeout;

pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadFull};
pub use circuit_breaker::{CallNotPermitted, CircuitBreaker, CircuitBreakerConfig, CircuitState};
pub use error::{BoxError, Error};
pub use events::EventStream;
pub use invalid_config::InvalidConfig;
pub use policy::{Policy, PolicyConfig};
pub use rate_limiter::{RateLimited, RateLimiter, RateLimiterConfig};
pub use retry::{DeadlineExceeded, Retry, RetryConfig};
pub use timeout::{Elapsed, Timeout, TimeoutConfig};
