//! Wire types shared by the msakit servers and the SDK: the request and response bodies of the
//! registry's and the config server's native HTTP APIs, and the one error body every server
//! returns.
//!
//! These are kept apart from each server's domain types, so the wire format stays stable while
//! the internals change.

pub mod audit;
pub mod config;
pub mod error;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod registry;
