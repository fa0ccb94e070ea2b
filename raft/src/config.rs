//! A node's cluster settings, as the servers' config files, variables and flags give them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Cluster mode: every change is a Raft entry, acknowledged once a quorum has it durably.
///
/// ```yaml
/// cluster:
///   node_id: 1
///   peers: { 1: "10.0.0.1:8888", 2: "10.0.0.2:8888", 3: "10.0.0.3:8888" }
///   token: "a-secret-the-nodes-share"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id, one of `peers`.
    pub node_id: NodeId,
    /// The initial members, id → the `host:port` their HTTP API (and Raft) listens on. The node
    /// with the lowest id initialises a new cluster; later changes go through the admin API.
    pub peers: BTreeMap<NodeId, String>,
    /// The token nodes present to each other on Raft messages; required when `auth.tokens` is
    /// set. Never logged.
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// How often the leader sends heartbeats. Default 200 ms.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for this long (up to a quarter more, at random) starts an
    /// election. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub election_timeout: Duration,
    /// How long a write (or a linearizable read) waits for a quorum before answering 503.
    /// Default 5 s.
    #[serde(with = "humantime_serde")]
    pub quorum_timeout: Duration,
    /// With TLS on: the CA (PEM) that signed the nodes' certificates. Nodes then talk HTTPS to
    /// each other, trusting this CA and presenting their own server certificate as a client
    /// certificate (so `tls.client_ca` may require it). Default none.
    pub ca: Option<std::path::PathBuf>,
    /// A node snapshots its state after this many log entries, and drops the log before the
    /// snapshot (keeping up to 1,000 entries for followers that lag a little). Default 5,000.
    pub snapshot_after: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            peers: BTreeMap::new(),
            token: None,
            heartbeat_interval: Duration::from_millis(200),
            election_timeout: Duration::from_secs(1),
            quorum_timeout: Duration::from_secs(5),
            snapshot_after: 5_000,
            ca: None,
        }
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|peer| {
            let (id, addr) = peer
                .split_once('=')
                .ok_or_else(|| format!("{peer:?} is not id=host:port"))?;
            let id = id
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{id:?} is not a node id"))?;
            Ok((id, addr.trim().to_owned()))
        })
        .collect()
}

impl ClusterConfig {
    /// `file`'s cluster settings with the flags (or variables) given over them; a cluster as
    /// soon as any of them is given.
    pub fn overlay(
        file: Option<Self>,
        node_id: Option<NodeId>,
        peers: Option<&BTreeMap<NodeId, String>>,
        token: Option<&str>,
    ) -> Option<Self> {
        if node_id.is_none() && peers.is_none() && token.is_none() {
            return file;
        }
        let mut config = file.unwrap_or_default();
        if let Some(id) = node_id {
            config.node_id = id;
        }
        if let Some(peers) = peers {
            config.peers = peers.clone();
        }
        if let Some(token) = token {
            config.token = Some(token.to_owned());
        }
        Some(config)
    }

    /// Checks the settings against what the `server` they run in requires; a problem is named
    /// by its field.
    pub fn check(&self, server: ServerSecurity) -> Result<(), (&'static str, &'static str)> {
        if server.serves_tls && self.ca.is_none() {
            return Err((
                "cluster.ca",
                "with tls, nodes need the CA (PEM) that signed their certificates",
            ));
        }
        if !self.peers.contains_key(&self.node_id) {
            return Err(("cluster.node_id", "must be one of cluster.peers"));
        }
        if self.peers.contains_key(&0) {
            return Err(("cluster.peers", "node ids start at 1"));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 3 > self.election_timeout
        {
            return Err((
                "cluster.heartbeat_interval",
                "must be above zero and at most a third of cluster.election_timeout",
            ));
        }
        if self.quorum_timeout < self.election_timeout {
            return Err((
                "cluster.quorum_timeout",
                "must be at least cluster.election_timeout",
            ));
        }
        if self.snapshot_after == 0 {
            return Err(("cluster.snapshot_after", "must be at least 1"));
        }
        if server.requires_tokens && self.token.as_deref().is_none_or(|t| t.len() < 8) {
            return Err((
                "cluster.token",
                "with auth.tokens set, the nodes need a token of at least 8 characters",
            ));
        }
        Ok(())
    }
}

/// What the server a cluster node runs in asks of its clients, which decides what the nodes
/// need of each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerSecurity {
    /// The server requires tokens (`auth.tokens`): the nodes need one too.
    pub requires_tokens: bool,
    /// The server serves HTTPS: the nodes need the CA that signed their certificates.
    pub serves_tls: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_are_named() {
        let peers = parse_peers("1=a:1, 2=b:2,3=c:3").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&2], "b:2");
        assert!(parse_peers("1:a").unwrap_err().contains("id=host:port"));
        assert!(parse_peers("x=a:1").unwrap_err().contains("node id"));
    }

    #[test]
    fn checks_name_the_field_at_fault() {
        let mut config = ClusterConfig {
            node_id: 1,
            peers: parse_peers("1=a:1,2=b:2,3=c:3").unwrap(),
            ..ClusterConfig::default()
        };
        let open = ServerSecurity::default();
        let tls = ServerSecurity {
            serves_tls: true,
            ..open
        };
        let tokens = ServerSecurity {
            requires_tokens: true,
            ..open
        };
        assert_eq!(config.check(open), Ok(()));
        assert_eq!(config.check(tls).unwrap_err().0, "cluster.ca");
        assert_eq!(config.check(tokens).unwrap_err().0, "cluster.token");
        config.node_id = 4;
        assert_eq!(config.check(open).unwrap_err().0, "cluster.node_id");
        config.node_id = 1;
        config.heartbeat_interval = config.election_timeout;
        assert_eq!(
            config.check(open).unwrap_err().0,
            "cluster.heartbeat_interval"
        );
    }
}
