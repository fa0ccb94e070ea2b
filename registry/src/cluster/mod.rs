//! Cluster mode: the registry replicated by Raft ([`msakit_raft`] over `openraft`), its log in
//! the registry's redb file.
//!
//! Registrations, deregistrations, overrides, metadata, health verdicts and evictions are
//! [`Command`]s every node applies in the same order, so every node answers reads and watches
//! with the same instances and the same indexes. Leases are not replicated: every node renews
//! the leases of the heartbeats it receives, followers hand them on to the leader in batches
//! ([`Renewals`]), and only the leader decides evictions. A node that becomes leader first
//! gives every instance one full lease of grace, so a failover never evicts a live instance.

mod proposals;
mod renewals;
mod state_machine;

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::BasicNode;

use crate::registry::RegistryWriter;
use crate::writes::{Applied, Command};

pub(crate) use msakit_raft::{ClusterConfig, ClusterError, ClusterStatus, NodeId, RAFT_LOG_FILE};
pub(crate) use proposals::Proposals;
pub(crate) use renewals::{BATCH_BODY_LIMIT, RenewalBatch, Renewals};

openraft::declare_raft_types!(
    /// The Raft types of the registry cluster.
    pub(crate) TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One node of the registry cluster.
pub(crate) type Cluster = msakit_raft::Cluster<TypeConfig>;

/// Starts this node: its log in `raft-log.redb` in `data_dir` (moved there from `db`, the
/// registry's database, where builds before kept it), its state `registry` (restored from the
/// last snapshot kept with the log, then from the log); HTTPS between nodes with `tls`.
pub(crate) async fn start(
    config: &ClusterConfig,
    tls: Option<&msakit_server_kit::TlsConfig>,
    data_dir: &Path,
    db: &redb::Database,
    registry: RegistryWriter,
) -> Result<Arc<Cluster>, ClusterError> {
    let log = msakit_raft::LogStore::<TypeConfig>::open(&data_dir.join(RAFT_LOG_FILE), db)
        .map_err(|e| ClusterError::Fatal(format!("opening the Raft log: {e}")))?;
    let machine = state_machine::StateMachine::open(registry, log.clone())?;
    Cluster::start(
        "msakit-registry",
        crate::format::LOG_FORMAT,
        config,
        tls,
        log,
        machine,
    )
    .await
}
