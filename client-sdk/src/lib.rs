//! The msakit SDK that services link. Everything starts from one [`Client`], built once with
//! where the registry and the config servers are, the tokens and TLS; what it builds shares its
//! HTTP client (one connection pool) and its discovery cache.
//!
//! - [`Registration`]: register this instance, heartbeat, re-register after a registry restart,
//!   deregister on shutdown.
//! - [`Discovery`]: a local, watch-driven cache of other services' instances that never blocks a
//!   call on the registry once it has data.
//! - [`ConfigClient`]: typed configuration that updates itself when the config server pushes a
//!   change, with a last-known-good copy on disk.
//! - [`resilience`]: the fault-tolerance primitives, re-exported.
//! - [`timer`]: timeouts for many short calls without a system call each (the attempt timeout).
//!
//! - [`ServiceClient`]: calls by service name — P2C over peak-EWMA latency, per-instance
//!   ejection, a per-service breaker, retries on another instance within a retry budget, a
//!   per-attempt timeout and a deadline passed downstream. A request borrows the client, the
//!   service's name and the path (`client.get("payment", "/pay").send().await`), so making one
//!   allocates nothing; to spawn a call, move a clone of the client into the task.

mod backoff;
mod client;
mod config;
mod discovery;
mod picker;
mod registration;
mod service_client;
mod sse;
pub mod timer;
mod tls;
mod tower_discover;
mod trace;

pub use client::{BuildError, Client, ClientBuilder};
pub use config::{ConfigClient, ConfigClientError, ConfigClientOptions};
pub use discovery::{Discovery, DiscoveryError};
pub use msakit_resilience as resilience;
pub use registration::{Registration, RegistrationOptions};
pub use service_client::{
    Balancer, CallError, CallErrorKind, DEADLINE_HEADER, Fallback, ServiceCall, ServiceClient,
    ServiceClientOptions, ServiceRequest,
};
pub use tls::{TlsError, TlsOptions};
pub use tower_discover::{InstanceChanges, discover};
