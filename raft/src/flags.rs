//! The cluster flags every clustered server takes (`--node-id`, `--peers`, `--cluster-token`),
//! each also read from the server's environment variable, laid over the config file's
//! `cluster:` settings.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use msakit_server_kit::EnvNames;

use crate::{ClusterConfig, NodeId, parse_peers};

/// The cluster flags; a server flattens them into its own `Cli`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterFlags<E: EnvNames> {
    /// Run as this node of a cluster (needs `--peers`).
    #[arg(long, env = E::NODE_ID)]
    pub node_id: Option<NodeId>,
    /// The cluster's initial members: `1=host:port,2=host:port,3=host:port`.
    #[arg(long, env = E::PEERS, value_parser = parse_peers)]
    pub peers: Option<BTreeMap<NodeId, String>>,
    /// The token nodes present to each other.
    #[arg(long, env = E::CLUSTER_TOKEN, hide_env_values = true)]
    pub cluster_token: Option<String>,
    #[arg(skip)]
    names: PhantomData<E>,
}

impl<E: EnvNames> ClusterFlags<E> {
    /// The flags laid over the file's cluster settings (`None`: not clustered).
    pub fn overlay(&self, file: Option<ClusterConfig>) -> Option<ClusterConfig> {
        ClusterConfig::overlay(
            file,
            self.node_id,
            self.peers.as_ref(),
            self.cluster_token.as_deref(),
        )
    }
}
