//! Integration tests of the `msakit` SDK against real `msakit-registry` and
//! `msakit-config-server` servers on port 0.

mod config;
mod discovery;
mod registration;
mod service_client;
mod support;
mod tls;
