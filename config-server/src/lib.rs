//! The msakit config server: durable, versioned configuration per application, profile and
//! label, with history, rollback, validation (syntax and JSON Schema), `{cipher}` secrets and push
//! to watchers by blocking query or Server-Sent Events.
//!
//! The binary (`main.rs`) only parses configuration, sets up logging and calls [`run`]; tests call
//! the same [`run`] on a port-0 listener.

mod cluster;
pub mod config;
mod config_store;
mod document;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod metrics;
mod native_dir;
mod secrets;
mod server;
mod storage;
mod writes;

pub use config::{Cli, ConfigServerConfig};
pub use msakit_server_kit::shutdown_signal;
pub use server::{ServerError, run};
pub use storage::StorageError;
