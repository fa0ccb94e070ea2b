//! The msakit SDK that services link.
//!
//! - [`Registration`]: register this instance, heartbeat, re-register after a registry restart,
//!   deregister on shutdown.
//! - [`Discovery`]: a local, watch-driven cache of other services' instances that never blocks a
//!   call on the registry once it has data.
//! - [`ConfigClient`]: typed configuration that updates itself when the config server pushes a
//!   change, with a last-known-good copy on disk.
//! - [`resilience`]: the fault-tolerance primitives, re-exported.
//!
//! Load-balanced calls (`ServiceClient`: P2C, outlier ejection, retries on another instance) are
//! the next step of the SDK and are not here yet.

mod backoff;
pub mod config;
pub mod discovery;
pub mod registration;
mod sse;

pub use config::{ConfigClient, ConfigClientOptions, ConfigError};
pub use discovery::{Discovery, DiscoveryError, DiscoveryOptions};
pub use msakit_resilience as resilience;
pub use registration::{Registration, RegistrationOptions};
