//! The gateway over real sockets: routing, security, limits, streaming, live reloads, admin.

mod admin;
mod limits;
mod process;
mod reload;
mod routing;
mod security;
mod streaming;
mod support;
