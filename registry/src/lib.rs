//! The msakit service registry: instances register and heartbeat, leases expire exactly, clients
//! look services up and watch them; it also speaks Eureka's REST API.
//!
//! Not yet built: this crate is a placeholder in the workspace until its own issue fills it.
