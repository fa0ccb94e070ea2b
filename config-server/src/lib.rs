//! The msakit config server: versioned, durable configuration per application, profile and
//! label, with history, rollback, validation, secrets and push to watchers; it also speaks Spring
//! Cloud Config's HTTP API.
//!
//! Not yet built: this crate is a placeholder in the workspace until its own issue fills it.
