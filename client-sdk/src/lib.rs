//! The msakit SDK that services link: registration and heartbeat, discovery with a cache, P2C
//! balancing, per-instance ejection, retries, circuit breakers, deadlines and typed live config.
//!
//! Not yet built beyond re-exporting the resilience primitives, which it builds on.

pub use msakit_resilience as resilience;
