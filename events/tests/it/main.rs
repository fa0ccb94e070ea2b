//! msakit-events over real sockets: a real registry, services serving their routes on loopback,
//! SQLite files in a temp dir, and a real Kafka broker when `MSAKIT_KAFKA` names one.

mod dead_letters;
mod direct;
mod kafka;
mod postgres;
mod relay;
mod support;
