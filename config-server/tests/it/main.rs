//! Integration tests of `msakit-config-server`: real servers on port 0 in temp dirs, real HTTP
//! clients, and the real binary killed with SIGKILL in the middle of a stream of writes.

mod audit;
mod auth;
mod cluster;
mod documents;
mod durability;
mod mixed_versions;
mod native_dir;
mod ops;
mod partition;
mod resolve;
mod secrets;
mod spring;
mod support;
mod validation;
mod watch;
