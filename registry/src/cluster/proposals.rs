//! Commands proposed together become one Raft entry: every command that arrives while an entry
//! is in flight waits for the next, which carries them all ([`Command::Batch`]) — so a burst of
//! registrations costs one Raft round (appends, fsyncs, messages) per burst instead of one per
//! registration, and each command's outcome is exactly what it would have been as an entry of
//! its own. A batch is written only once every member reads them ([`LOG_FORMAT`]); until then,
//! mid-way through a rolling upgrade, each command is its own entry as before.
//!
//! Each command's proposal runs in a task of its own, so a caller that goes away (a client that
//! hung up) neither stops an entry half-way nor leaves its command waiting for a later one.

use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, oneshot};

use super::{Cluster, ClusterError};
use crate::format::{Command, FormatVersion, LOG_FORMAT};
use crate::writes::Applied;

/// Entries in flight at once: one being replicated while the next one fills.
const IN_FLIGHT: usize = 2;

/// The most commands one entry carries (a registration's body is size-limited, so an entry and
/// a message of entries stay far below the Raft routes' body limit); the rest wait for the next.
const MOST_PER_ENTRY: usize = 64;

/// Where a command's outcome goes.
type Reply = oneshot::Sender<Result<Applied, ClusterError>>;

/// A command waiting for the next entry.
struct Waiting {
    command: Command,
    reply: Reply,
}

/// Commands waiting for their Raft entry.
pub(crate) struct Proposals {
    cluster: Arc<Cluster>,
    waiting: Arc<Mutex<Vec<Waiting>>>,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for Proposals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposals").finish_non_exhaustive()
    }
}

impl Proposals {
    /// Proposals to `cluster`.
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        Self {
            cluster,
            waiting: Arc::new(Mutex::new(Vec::new())),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// Proposes `command` with whatever else is waiting; its outcome once a quorum holds the
    /// entry and this node applied it.
    pub(crate) async fn propose(&self, command: Command) -> Result<Applied, ClusterError> {
        let (reply, outcome) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Waiting { command, reply });
        let (cluster, waiting, in_flight) = (
            Arc::clone(&self.cluster),
            Arc::clone(&self.waiting),
            Arc::clone(&self.in_flight),
        );
        tokio::spawn(async move {
            let Ok(_slot) = in_flight.acquire_owned().await else {
                return;
            };
            // What is waiting now: this command, unless an entry already carries it.
            let batch: Vec<Waiting> = {
                let mut waiting = waiting.lock().unwrap_or_else(|e| e.into_inner());
                let take = waiting.len().min(MOST_PER_ENTRY);
                waiting.drain(..take).collect()
            };
            if !batch.is_empty() {
                propose_batch(&cluster, batch).await;
            }
        });
        outcome
            .await
            .unwrap_or_else(|_| Err(ClusterError::Fatal("the proposal was dropped".into())))
    }
}

/// Proposes `batch`: one entry when every member reads batches, else one entry per command.
async fn propose_batch(cluster: &Cluster, batch: Vec<Waiting>) {
    let (commands, replies): (Vec<Command>, Vec<Reply>) =
        batch.into_iter().map(|w| (w.command, w.reply)).unzip();
    if commands.len() == 1 || !cluster.members_read(LOG_FORMAT) {
        // In order: each proposal reaches the Raft core when first polled.
        let outcomes =
            futures_util::future::join_all(commands.into_iter().map(|c| cluster.propose(c))).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
        return;
    }
    let count = commands.len();
    let entry = Command::Batch {
        format_version: FormatVersion::CURRENT,
        commands,
    };
    match cluster.propose(entry).await {
        Ok(Applied::Batch(outcomes)) if outcomes.len() == count => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(other) => {
            let error = ClusterError::Fatal(format!("unexpected outcome of a batch: {other:?}"));
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
