//! Cluster mode: the config state replicated by Raft ([`openraft`]), its log and state machine
//! in the same redb file the single node uses.
//!
//! Every change is a [`Command`] proposed to the leader and acknowledged once a quorum holds it
//! durably and the leader has applied it; every node applies the same commands in the same
//! order, so every node's watchers hear every change in order. Reads are linearizable by default
//! (the leader confirms it still leads before answering, and followers hand reads to it); a
//! request may ask for a stale read from any node instead.

mod log_store;
mod network;
mod state_machine;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::{BasicNode, ServerState};
use serde::Serialize;

use crate::config::ClusterConfig;
use crate::service::{Applied, Command, Committer};
use crate::store::Store;

pub(crate) use network::{FORWARDED_BY, RaftTransport};

/// A node's id.
pub(crate) type NodeId = u64;

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

/// The Raft instance.
pub(crate) type Raft = openraft::Raft<TypeConfig>;

/// Why the cluster could not do what was asked. Each names the leader this node last knew.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ClusterError {
    /// This node is not the leader (and the request cannot be handed to it).
    #[error("node {node} is not the leader; {}", describe(leader))]
    NotLeader {
        /// This node.
        node: NodeId,
        /// The leader it knows of, with its address.
        leader: Option<(NodeId, String)>,
    },
    /// No quorum acknowledged in time: this node may be in a minority partition.
    #[error(
        "no quorum within {waited:?} (node {node} may be cut off from the majority); {}",
        describe(leader)
    )]
    NoQuorum {
        /// This node.
        node: NodeId,
        /// How long it waited.
        waited: Duration,
        /// The leader it last knew.
        leader: Option<(NodeId, String)>,
    },
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// Raft stopped (storage failure, shutdown).
    #[error("the replicated log is unavailable: {0}")]
    Fatal(String),
}

fn describe(leader: &Option<(NodeId, String)>) -> String {
    match leader {
        Some((id, addr)) => format!("the last known leader is node {id} at {addr}"),
        None => "no leader is known".to_owned(),
    }
}

impl ClusterError {
    /// The leader named by the error, if any.
    pub(crate) fn leader(&self) -> Option<&(NodeId, String)> {
        match self {
            ClusterError::NotLeader { leader, .. } | ClusterError::NoQuorum { leader, .. } => {
                leader.as_ref()
            }
            _ => None,
        }
    }
}

/// What `/health` and `GET /v1/cluster` say about the node.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ClusterStatus {
    /// This node.
    pub(crate) node_id: NodeId,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub(crate) role: String,
    /// The current term.
    pub(crate) term: u64,
    /// The leader this node knows of.
    pub(crate) leader: Option<NodeId>,
    /// The leader's address.
    pub(crate) leader_addr: Option<String>,
    /// The last log index applied here (everything up to it is committed).
    pub(crate) applied_index: Option<u64>,
    /// The last log index held here.
    pub(crate) last_log_index: Option<u64>,
    /// Voting members, id → address.
    pub(crate) voters: BTreeMap<NodeId, String>,
    /// Non-voting members (catching up), id → address.
    pub(crate) learners: BTreeMap<NodeId, String>,
    /// Milliseconds since this node last heard from a leader (0 on the leader itself).
    pub(crate) last_leader_contact_ms: Option<u64>,
}

/// One node of the cluster.
pub(crate) struct Cluster {
    raft: Raft,
    node_id: NodeId,
    quorum_timeout: Duration,
    /// When a leader last reached this node (ms since the Unix epoch); 0 if never.
    leader_contact_ms: Arc<AtomicU64>,
    /// Hands requests to the leader.
    forwarder: reqwest::Client,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Cluster {
    /// Starts this node over `store` (which `committer` applies commands to); the lowest id of
    /// `config.peers` initialises a new cluster.
    pub(crate) async fn start(
        config: &ClusterConfig,
        store: &Store,
        committer: Committer,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let election = config.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: "msakit-config".into(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            install_snapshot_timeout: 10_000,
            // Chunks and batches small enough for the Raft routes' body limit.
            snapshot_max_chunk_size: 256 * 1024,
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let log = log_store::LogStore::new(store.database());
        let machine = state_machine::StateMachine::new(store.clone(), committer);
        let transport = RaftTransport::new(config.token.clone());
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            transport,
            log,
            machine,
        )
        .await
        .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let first = config.peers.keys().next().copied();
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        if first == Some(config.node_id) && !initialized {
            let members: BTreeMap<NodeId, BasicNode> = config
                .peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            if let Err(e) = raft.initialize(members).await {
                tracing::warn!(error = %e, "cluster initialisation refused");
            } else {
                tracing::info!(peers = ?config.peers, "cluster initialised");
            }
        }
        Ok(Arc::new(Cluster {
            raft,
            node_id: config.node_id,
            quorum_timeout: config.quorum_timeout,
            leader_contact_ms: Arc::new(AtomicU64::new(0)),
            forwarder: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .build()
                .map_err(|e| ClusterError::Fatal(e.to_string()))?,
        }))
    }

    /// The Raft instance, for the RPC handlers.
    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The client that hands requests to the leader (no overall timeout: blocking queries wait).
    pub(crate) fn forwarder(&self) -> &reqwest::Client {
        &self.forwarder
    }

    /// This node's id.
    pub(crate) fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Notes that a leader reached this node (an append or a snapshot arrived).
    pub(crate) fn heard_from_leader(&self) {
        self.leader_contact_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since a leader last reached this node; 0 on the leader.
    pub(crate) fn staleness_ms(&self) -> Option<u64> {
        if self.is_leader() {
            return Some(0);
        }
        match self.leader_contact_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(unix_ms().saturating_sub(at)),
        }
    }

    /// The leader this node knows of, with its address.
    pub(crate) fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())?;
        Some((leader, addr))
    }

    /// Whether this node leads.
    pub(crate) fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(self.node_id)
    }

    fn not_leader(&self) -> ClusterError {
        ClusterError::NotLeader {
            node: self.node_id,
            leader: self.leader(),
        }
    }

    fn no_quorum(&self) -> ClusterError {
        ClusterError::NoQuorum {
            node: self.node_id,
            waited: self.quorum_timeout,
            leader: self.leader(),
        }
    }

    /// Proposes `command`; answers once a quorum holds it durably and this node applied it.
    pub(crate) async fn propose(&self, command: Command) -> Result<Applied, ClusterError> {
        match tokio::time::timeout(self.quorum_timeout, self.raft.client_write(command)).await {
            Err(_) => Err(self.no_quorum()),
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(e)) => match e.forward_to_leader::<BasicNode>() {
                Some(_) => Err(self.not_leader()),
                None => Err(ClusterError::Fatal(e.to_string())),
            },
        }
    }

    /// Waits until this node (the leader) has confirmed with a quorum that it still leads and
    /// has applied everything committed before now: a read after this is linearizable.
    pub(crate) async fn linearize(&self) -> Result<(), ClusterError> {
        match tokio::time::timeout(self.quorum_timeout, self.raft.ensure_linearizable()).await {
            Err(_) => Err(self.no_quorum()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => match e.forward_to_leader::<BasicNode>() {
                Some(_) => Err(self.not_leader()),
                None => Err(self.no_quorum()),
            },
        }
    }

    /// Adds a node: as a learner until it has caught up, then as a voter.
    pub(crate) async fn add_node(&self, id: NodeId, addr: String) -> Result<(), ClusterError> {
        let membership = |e: &dyn std::fmt::Display| ClusterError::Membership(e.to_string());
        if let Err(e) = self.raft.add_learner(id, BasicNode { addr }, true).await {
            return Err(match e.forward_to_leader::<BasicNode>() {
                Some(_) => self.not_leader(),
                None => membership(&e),
            });
        }
        let voters = BTreeSet::from([id]);
        self.raft
            .change_membership(openraft::ChangeMembers::AddVoterIds(voters), false)
            .await
            .map_err(|e| match e.forward_to_leader::<BasicNode>() {
                Some(_) => self.not_leader(),
                None => membership(&e),
            })?;
        Ok(())
    }

    /// Removes a node from the cluster.
    pub(crate) async fn remove_node(&self, id: NodeId) -> Result<(), ClusterError> {
        let voters = BTreeSet::from([id]);
        self.raft
            .change_membership(openraft::ChangeMembers::RemoveVoters(voters), false)
            .await
            .map_err(|e| match e.forward_to_leader::<BasicNode>() {
                Some(_) => self.not_leader(),
                None => ClusterError::Membership(e.to_string()),
            })?;
        let _ = self
            .raft
            .change_membership(
                openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                false,
            )
            .await;
        Ok(())
    }

    /// Role, term, leader, indexes and members.
    pub(crate) fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let (mut voters, mut learners) = (BTreeMap::new(), BTreeMap::new());
        for (id, node) in membership.nodes() {
            if voter_ids.contains(id) {
                voters.insert(*id, node.addr.clone());
            } else {
                learners.insert(*id, node.addr.clone());
            }
        }
        let leader_addr = metrics
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.addr.clone()));
        ClusterStatus {
            node_id: self.node_id,
            role: format!("{:?}", metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader,
            leader_addr,
            applied_index: metrics.last_applied.map(|l| l.index),
            last_log_index: metrics.last_log_index,
            voters,
            learners,
            last_leader_contact_ms: self.staleness_ms(),
        }
    }

    /// Stops Raft (at server shutdown).
    pub(crate) async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}
