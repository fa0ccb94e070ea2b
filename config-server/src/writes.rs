//! [`Writes`], the one path every change to the config state takes: on a single node straight
//! to the [`Committer`] (on a blocking thread: a commit waits for fsync), in a cluster proposed
//! to the leader and acknowledged once a quorum holds it and this node has applied it.

use std::sync::Arc;

use crate::cluster::Cluster;
use crate::config_store::{Applied, Committer, ConfigStoreError};
use crate::format::Command;
use crate::storage::blocking;

/// The path every change takes; cheap to clone.
#[derive(Clone)]
pub(crate) struct Writes {
    committer: Committer,
    cluster: Option<Arc<Cluster>>,
}

impl Writes {
    /// Changes through `committer`, or through `cluster` (whose state machine holds a clone of
    /// `committer`) when there is one.
    pub(crate) fn new(committer: Committer, cluster: Option<Arc<Cluster>>) -> Self {
        Self { committer, cluster }
    }

    /// The cluster, in cluster mode.
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// What applies the changes here.
    pub(crate) fn committer(&self) -> &Committer {
        &self.committer
    }

    /// Applies `command` here (a single node), or has the cluster commit it and waits until it
    /// is applied here.
    pub(crate) async fn apply(&self, command: Command) -> Result<Applied, ConfigStoreError> {
        match &self.cluster {
            Some(cluster) => Ok(cluster.propose(command).await?),
            None => {
                let committer = self.committer.clone();
                Ok(blocking(move || committer.apply(command, None)).await?)
            }
        }
    }
}
