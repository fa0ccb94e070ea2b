//! Lease renewals a follower hands on to the leader: collected for a short while, deduplicated,
//! and sent in one request (`POST /v1/cluster/renewals`), so heartbeats never touch the Raft log
//! and the leader, which decides evictions, sees every instance's heartbeats.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::registry::InstanceKey;

/// How long renewals are collected before they are sent.
const BATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Instances per request at most (a key is at most 3 × 128 bytes of names: well within the
/// renewals route's body limit).
const BATCH_KEYS: usize = 10_000;

/// The body limit of the route renewals arrive on.
pub(crate) const BATCH_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// What a follower sends the leader.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct RenewalBatch {
    /// The instances renewed since the last batch.
    pub(crate) instances: Vec<InstanceKey>,
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Renewals {
    queue: mpsc::UnboundedSender<InstanceKey>,
}

impl Renewals {
    /// Starts the task that sends batches to `cluster`'s leader until `shutdown`.
    pub(crate) fn spawn(cluster: Arc<Cluster>, shutdown: CancellationToken) -> Self {
        let (queue, received) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(cluster, received, shutdown));
        Self { queue }
    }

    /// Queues one renewal for the leader.
    pub(crate) fn push(&self, namespace: &str, service: &str, id: &str) {
        let _ = self
            .queue
            .send((namespace.to_owned(), service.to_owned(), id.to_owned()));
    }
}

async fn send_batches(
    cluster: Arc<Cluster>,
    mut received: mpsc::UnboundedReceiver<InstanceKey>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(BATCH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: HashSet<InstanceKey> = HashSet::new();
    loop {
        tokio::select! {
            key = received.recv() => match key {
                Some(key) => { pending.insert(key); }
                None => return,
            },
            _ = ticks.tick() => {
                if pending.is_empty() {
                    continue;
                }
                let keys: Vec<InstanceKey> = pending.drain().collect();
                for chunk in keys.chunks(BATCH_KEYS) {
                    send(&cluster, &RenewalBatch { instances: chunk.to_vec() }).await;
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Sends `batch` to the leader. Best effort: a batch the leader does not get is covered by the
/// next one, and a new leader gives every instance a lease of grace anyway.
async fn send(cluster: &Cluster, batch: &RenewalBatch) {
    let Some((leader, addr)) = cluster.leader() else {
        return;
    };
    if leader == cluster.node_id() {
        return;
    }
    let mut request = cluster
        .forwarder()
        .post(cluster.peer_url(&addr, "/v1/cluster/renewals"))
        .timeout(Duration::from_secs(2))
        .json(batch);
    if let Some(token) = cluster.token() {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            tracing::debug!(leader, status = %response.status(), "the leader refused renewals")
        }
        Err(e) => tracing::debug!(leader, error = %e, "renewals not handed to the leader"),
    }
}
