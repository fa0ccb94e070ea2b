//! Wire types shared by the msakit servers and the SDK: request and response bodies of the
//! registry's and the config server's native HTTP APIs.
//!
//! This crate is filled by the registry and config-server issues. It holds only wire types, kept
//! apart from each server's domain types so the wire format can stay stable while the internals
//! change.
