//! Raft plumbing shared by the clustered msakit servers, on [`openraft`].
//!
//! A server brings its own state machine and command type; this crate brings the rest: the node
//! ([`Cluster`]: start, propose, linearizable reads, membership, status), the durable log and
//! vote in the server's own redb file ([`LogStore`]), the transport between nodes (JSON over
//! HTTP on each node's API port, [`raft_routes`] on the receiving side) and the middleware that
//! sends each client request where it can be answered ([`route`]).

mod config;
mod flags;
mod http;
pub mod kept_snapshot;
mod log_format;
mod log_store;
mod network;
mod node;
#[cfg(feature = "testing")]
pub mod testing;

use std::io::Cursor;

use openraft::impls::OneshotResponder;
use openraft::{BasicNode, RaftTypeConfig, TokioRuntime};

pub use config::{ClusterConfig, ServerSecurity, parse_peers};
pub use flags::ClusterFlags;
pub use http::{
    CONSISTENCY, NewNode, Reads, Routing, add_node, check_peer, leader_bound, not_clustered,
    raft_routes, remove_node, route,
};
pub use kept_snapshot::StoredSnapshot;
pub use log_format::{LOG_FORMAT, LogFormat};
pub use log_store::{LogStore, RAFT_LOG_FILE, blocking};
pub use network::FORWARDED_BY;
pub use node::{Cluster, ClusterError, ClusterStatus};
pub use openraft;

/// A node's id (at least 1).
pub type NodeId = u64;

/// The Raft types every msakit cluster shares: `u64` node ids, nodes known by `host:port`,
/// snapshots as bytes in memory, tokio. A server declares its own with
/// [`openraft::declare_raft_types!`], choosing only its command (`D`) and answer (`R`).
pub trait TypeConfig:
    RaftTypeConfig<
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<Self>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
        Responder = OneshotResponder<Self>,
    >
{
}

impl<C> TypeConfig for C where
    C: RaftTypeConfig<
            NodeId = NodeId,
            Node = BasicNode,
            Entry = openraft::Entry<C>,
            SnapshotData = Cursor<Vec<u8>>,
            AsyncRuntime = TokioRuntime,
            Responder = OneshotResponder<C>,
        >
{
}
