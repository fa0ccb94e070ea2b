//! One node of a cluster: starting it, proposing commands, linearizable reads, membership, and
//! what it says about itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{BasicNode, Raft, ServerState};
use serde::Serialize;

use crate::log_format::{LogFormat, PeerFormats};
use crate::log_store::LogStore;
use crate::network::RaftTransport;
use crate::{ClusterConfig, NodeId, TypeConfig};

/// Why the cluster could not do what was asked. Each names the leader this node last knew.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
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
    pub fn leader(&self) -> Option<&(NodeId, String)> {
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
pub struct ClusterStatus {
    /// This node.
    pub node_id: NodeId,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The leader's address.
    pub leader_addr: Option<String>,
    /// The last log index applied here (everything up to it is committed).
    pub applied_index: Option<u64>,
    /// The last log index held here.
    pub last_log_index: Option<u64>,
    /// The last log index the latest snapshot here covers.
    pub snapshot_index: Option<u64>,
    /// The log is dropped up to this index (covered by a snapshot).
    pub purged_index: Option<u64>,
    /// Voting members, id → address.
    pub voters: BTreeMap<NodeId, String>,
    /// Non-voting members (catching up), id → address.
    pub learners: BTreeMap<NodeId, String>,
    /// Milliseconds since this node last heard from a leader (on the leader: since a quorum
    /// last acknowledged it).
    pub last_leader_contact_ms: Option<u64>,
}

/// One node of the cluster, whose state machine applies `C::D` commands.
pub struct Cluster<C: TypeConfig> {
    raft: Raft<C>,
    node_id: NodeId,
    quorum_timeout: Duration,
    election_timeout: Duration,
    /// When a leader last reached this node (ms since the Unix epoch); 0 if never.
    leader_contact_ms: Arc<AtomicU64>,
    /// Hands requests to the leader (and carries Raft messages).
    forwarder: reqwest::Client,
    /// `http` or `https`, between nodes.
    scheme: &'static str,
    /// What nodes present to each other.
    token: Option<String>,
    /// The newest log format this build reads.
    log_format: LogFormat,
    /// What the other nodes say they read.
    peer_formats: Arc<PeerFormats>,
}

impl<C: TypeConfig> std::fmt::Debug for Cluster<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The client nodes talk to each other with: plain, or HTTPS trusting `config.ca` and
/// presenting the node's own certificate.
fn peer_client(
    config: &ClusterConfig,
    tls: Option<&msakit_server_kit::TlsConfig>,
) -> Result<reqwest::Client, ClusterError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| ClusterError::Fatal(format!("reading {}: {e}", path.display())))
    };
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(tls) = tls {
        // Only the cluster's CA: a publicly issued certificate for a peer's name is no peer.
        builder = builder.tls_built_in_root_certs(false);
        let ca = config.ca.as_deref().ok_or_else(|| {
            ClusterError::Fatal("with tls, cluster.ca must name the nodes' CA".into())
        })?;
        let unusable = |path: &std::path::Path, e: reqwest::Error| {
            ClusterError::Fatal(format!("{}: {e}", path.display()))
        };
        for root in
            reqwest::Certificate::from_pem_bundle(&read(ca)?).map_err(|e| unusable(ca, e))?
        {
            builder = builder.add_root_certificate(root);
        }
        let mut pem = read(&tls.cert)?;
        pem.push(b'\n');
        pem.extend(read(&tls.key)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| unusable(&tls.cert, e))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| ClusterError::Fatal(e.to_string()))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<C: TypeConfig> Cluster<C> {
    /// Starts this node: its log and vote in `log`, its state in `machine`; `name` tells clusters
    /// apart, `log_format` is the newest log format this build reads. The lowest id of
    /// `config.peers` initialises a new cluster. With `tls` (the server's own certificate), nodes
    /// talk HTTPS, trusting `config.ca`.
    pub async fn start<M: RaftStateMachine<C>>(
        name: &str,
        log_format: LogFormat,
        config: &ClusterConfig,
        tls: Option<&msakit_server_kit::TlsConfig>,
        log: LogStore<C>,
        machine: M,
    ) -> Result<Arc<Self>, ClusterError> {
        let client = peer_client(config, tls)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let election = config.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: name.into(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: election,
            // openraft lets a follower stand only once the old leader's lease (the maximum)
            // has run out too: a narrow range keeps failover near twice the timeout.
            election_timeout_max: election + election / 4,
            install_snapshot_timeout: 10_000,
            // Chunks and batches small enough for the Raft routes' body limit.
            snapshot_max_chunk_size: 256 * 1024,
            max_payload_entries: 64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_after),
            max_in_snapshot_log_to_keep: config.snapshot_after.min(1_000),
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let peer_formats = Arc::new(PeerFormats::default());
        let transport = RaftTransport::new(
            client.clone(),
            scheme,
            config.token.clone(),
            Arc::clone(&peer_formats),
        );
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
            election_timeout: config.election_timeout,
            leader_contact_ms: Arc::new(AtomicU64::new(0)),
            forwarder: client,
            scheme,
            token: config.token.clone(),
            log_format,
            peer_formats,
        }))
    }

    /// The newest log format this build reads (what its answers to Raft messages say).
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }

    /// Whether every other member — voters and learners — has said it reads `format`: a leader
    /// writes a newer kind of entry only then. A member not heard from yet has not.
    pub fn members_read(&self, format: LogFormat) -> bool {
        let others: Vec<NodeId> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| *id != self.node_id)
                .collect()
        };
        self.peer_formats.all_read(others, format)
    }

    /// The Raft instance (its metrics tell role changes).
    pub fn raft(&self) -> &Raft<C> {
        &self.raft
    }

    /// The client that hands requests to the leader (no overall timeout: blocking queries wait).
    pub fn forwarder(&self) -> &reqwest::Client {
        &self.forwarder
    }

    /// The URL of `path` on the node at `addr` (`host:port`).
    pub fn peer_url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// The token nodes present to each other, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Notes that a leader reached this node (an append or a snapshot arrived).
    pub fn heard_from_leader(&self) {
        self.leader_contact_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since a leader last reached this node — on the leader, since a quorum
    /// last acknowledged it.
    pub fn staleness_ms(&self) -> Option<u64> {
        if self.is_leader() {
            return self.raft.metrics().borrow().millis_since_quorum_ack;
        }
        match self.leader_contact_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(unix_ms().saturating_sub(at)),
        }
    }

    /// The error to answer with when this node has heard from no leader (or, leading, from no
    /// quorum) for longer than the quorum timeout — far longer than an election takes: it is
    /// likely cut off from the majority.
    pub fn cut_off(&self) -> Option<ClusterError> {
        let silent = self
            .staleness_ms()
            .is_none_or(|ms| ms > self.quorum_timeout.as_millis() as u64);
        silent.then(|| self.no_quorum())
    }

    /// Whether this node leads and a quorum acknowledged it within an election timeout: its
    /// state is the cluster's (a leader cut off from the majority is not current).
    pub fn is_current(&self) -> bool {
        self.is_leader()
            && self
                .staleness_ms()
                .is_some_and(|ms| ms <= self.election_timeout.as_millis() as u64)
    }

    /// The leader this node knows of, with its address.
    pub fn leader(&self) -> Option<(NodeId, String)> {
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
    pub fn is_leader(&self) -> bool {
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
    pub async fn propose(&self, command: C::D) -> Result<C::R, ClusterError> {
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
    pub async fn linearize(&self) -> Result<(), ClusterError> {
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
    pub async fn add_node(&self, id: NodeId, addr: String) -> Result<(), ClusterError> {
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
    pub async fn remove_node(&self, id: NodeId) -> Result<(), ClusterError> {
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
    pub fn status(&self) -> ClusterStatus {
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
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            voters,
            learners,
            last_leader_contact_ms: self.staleness_ms(),
        }
    }

    /// Sets this node's gauges through the `metrics` facade (the caller picks the recorder):
    /// `msakit_cluster_is_leader`, `_has_leader`, `_term`, `_applied_index`, `_last_log_index`,
    /// `_voters`, and `_leader_contact_ms` (since a leader reached this node; on the leader, since
    /// a quorum acknowledged it).
    pub fn export_gauges(&self) {
        let status = self.status();
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        metrics::gauge!("msakit_cluster_is_leader").set(flag(status.leader == Some(self.node_id)));
        metrics::gauge!("msakit_cluster_has_leader").set(flag(status.leader.is_some()));
        metrics::gauge!("msakit_cluster_term").set(status.term as f64);
        metrics::gauge!("msakit_cluster_applied_index")
            .set(status.applied_index.unwrap_or(0) as f64);
        metrics::gauge!("msakit_cluster_last_log_index")
            .set(status.last_log_index.unwrap_or(0) as f64);
        metrics::gauge!("msakit_cluster_voters").set(status.voters.len() as f64);
        if let Some(ms) = status.last_leader_contact_ms {
            metrics::gauge!("msakit_cluster_leader_contact_ms").set(ms as f64);
        }
    }

    /// Stops Raft (at server shutdown).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}
