//! Cluster mode: the config state replicated by Raft ([`msakit_raft`] over `openraft`), its log
//! and state machine in the same redb file the single node uses.
//!
//! Every change is a [`Command`] proposed to the leader and acknowledged once a quorum holds it
//! durably and the leader has applied it; every node applies the same commands in the same
//! order, so every node's watchers hear every change in order. Reads are linearizable by default
//! (the leader confirms it still leads before answering, and followers hand reads to it); a
//! request may ask for a stale read from any node instead.

mod state_machine;

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::BasicNode;

use crate::config::ClusterConfig;
use crate::config_store::{Applied, Committer};
use crate::format::Command;
use crate::storage::Storage;

pub(crate) use msakit_raft::{ClusterError, ClusterStatus, NodeId};

openraft::declare_raft_types!(
    /// The Raft types of the config cluster.
    pub(crate) TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One node of the config cluster.
pub(crate) type Cluster = msakit_raft::Cluster<TypeConfig>;

/// Starts this node over `store` (which `committer` applies commands to), its log in
/// `raft-log.redb` in `data_dir` (moved there from `store`'s database, where builds before kept
/// it); HTTPS between nodes with `tls`.
pub(crate) async fn start(
    config: &ClusterConfig,
    tls: Option<&msakit_server_kit::TlsConfig>,
    data_dir: &Path,
    store: &Storage,
    committer: Committer,
) -> Result<Arc<Cluster>, ClusterError> {
    let log = msakit_raft::LogStore::open(
        &data_dir.join(msakit_raft::RAFT_LOG_FILE),
        &store.database(),
    )
    .map_err(|e| ClusterError::Fatal(format!("opening the Raft log: {e}")))?;
    let machine = state_machine::StateMachine::new(store.clone(), committer);
    Cluster::start(
        "msakit-config",
        msakit_raft::LogFormat::FIRST,
        config,
        tls,
        log,
        machine,
    )
    .await
}
