//! The msakit service registry: instances register and heartbeat, leases expire exactly, clients
//! look services up and watch them — by blocking query or Server-Sent Events — and changes reach
//! watchers in milliseconds.
//!
//! The binary (`main.rs`) only parses configuration, sets up logging and calls [`run`]; tests call
//! the same [`run`] on a port-0 listener.

mod audit;
mod cluster;
pub mod config;
mod eureka;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod health_check;
mod http;
mod metrics;
pub mod registry;
mod server;
mod store;
mod validate;
mod writes;

pub use config::{Cli, RegistryConfig};
pub use msakit_server_kit::shutdown_signal;
pub use server::{ServerError, run};
pub use store::StoreError;
