//! [`Writes`], the one path every change to the config state takes: on a single node straight
//! to the [`Committer`] (on a blocking thread: a commit waits for fsync), in a cluster proposed
//! to the leader and acknowledged once a quorum holds it and this node has applied it.

use std::sync::Arc;

use crate::cluster::Cluster;
use crate::config_store::{Applied, Committer, Committing, ConfigStoreError, WritePath};
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

    /// Applies `command` here (a single node), or has the cluster commit it and waits until it
    /// is applied here.
    pub(crate) async fn apply(&self, command: Command) -> Result<Applied, ConfigStoreError> {
        match &self.cluster {
            Some(cluster) => cluster
                .propose(command)
                .await
                .map_err(|e| ConfigStoreError::NotCommitted(Arc::new(e))),
            None => {
                let committer = self.committer.clone();
                Ok(blocking(move || committer.apply(command, None)).await?)
            }
        }
    }
}

impl WritePath for Writes {
    fn commit(&self, command: Command) -> Committing<'_> {
        Box::pin(self.apply(command))
    }
}

impl std::fmt::Debug for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writes")
            .field("clustered", &self.cluster.is_some())
            .finish_non_exhaustive()
    }
}
