//! Integration tests of `msakit-registry`: real servers on port 0, real HTTP clients, and the
//! real binary under SIGTERM.

mod api;
mod audit;
mod auth;
mod bad_input;
mod cluster;
mod eureka;
mod expiry;
mod health_checks;
mod limits;
mod mixed_versions;
mod ops;
mod partition;
mod persistence;
mod process;
mod support;
mod watch;
