//! Integration tests of `msakit-resilience`: every primitive through its public API, under paused
//! time, under real multi-threaded contention, and in front of a real HTTP server on loopback.

mod allocations;
mod bulkhead;
mod circuit_breaker;
mod policy;
mod rate_limiter;
mod retry;
mod support;
mod window_model;
