//! The Raft state machine: the registry in memory. Applying an entry runs the same code a single
//! node runs ([`writes::apply`](crate::writes::apply)); a snapshot is every registration and the
//! registry index, kept in the log store's file, from which a restarted node starts before Raft
//! replays the log after it.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};

use msakit_raft::blocking;

use super::{ClusterError, NodeId, TypeConfig};
use crate::format::SnapshotRecord;
use crate::registry::{Dumped, EvictionCheck, RegistryWriter};
use crate::writes::{self, Applied};

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

fn any<E: std::error::Error + 'static>(e: E) -> AnyError {
    AnyError::new(&e)
}

/// The last entry applied and the membership it left.
#[derive(Debug, Default)]
struct AppliedState {
    last: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// The state machine; cheap to clone.
#[derive(Clone)]
pub(crate) struct StateMachine {
    registry: RegistryWriter,
    log: msakit_raft::LogStore<TypeConfig>,
    /// Held while an entry is applied and while a snapshot is read, so a snapshot's state and
    /// the entry it ends at always match.
    applied: Arc<Mutex<AppliedState>>,
}

impl StateMachine {
    /// Over `registry`, restored from the last snapshot kept in `log`'s file.
    pub(crate) fn open(
        registry: RegistryWriter,
        log: msakit_raft::LogStore<TypeConfig>,
    ) -> std::result::Result<Self, ClusterError> {
        let mut applied = AppliedState::default();
        let kept = log
            .current_snapshot()
            .map_err(|e| ClusterError::Fatal(format!("reading the last snapshot: {e}")))?;
        if let Some((meta, data)) = kept {
            let data: Dumped = serde_json::from_slice::<SnapshotRecord>(&data)
                .map_err(|e| ClusterError::Fatal(format!("reading the last snapshot: {e}")))?
                .into();
            tracing::info!(
                instances = data.instances.len(),
                index = data.index,
                "restored the last snapshot; each instance has one lease to heartbeat"
            );
            registry.replace(data);
            applied.last = meta.last_log_id;
            applied.membership = meta.last_membership;
        }
        Ok(Self {
            registry,
            log,
            applied: Arc::new(Mutex::new(applied)),
        })
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, AppliedState> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let (meta, data) = {
            let applied = self.applied();
            let dumped = self.registry.dump();
            let snapshot_id = match &applied.last {
                Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
                None => "empty".to_owned(),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            (meta, dumped)
        };
        let log = self.log.clone();
        let meta_kept = meta.clone();
        let save = move || {
            let bytes = serde_json::to_vec(&SnapshotRecord::from(data)).map_err(any)?;
            log.save_snapshot(&meta_kept, &bytes)?;
            Ok(bytes)
        };
        let bytes = blocking(save, |e| StorageIOError::write_snapshot(None, e)).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let applied = self.applied();
        Ok((applied.last, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            let mut applied = self.applied();
            outcomes.push(match entry.payload {
                EntryPayload::Blank => Applied::Done,
                EntryPayload::Normal(command) => {
                    writes::apply(&self.registry, command, EvictionCheck::LeaderDecided)
                }
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Applied::Done
                }
            });
            applied.last = Some(entry.log_id);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let bytes = snapshot.into_inner();
        let data: Dumped = serde_json::from_slice::<SnapshotRecord>(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), any(e)))?
            .into();
        let (log, kept) = (self.log.clone(), meta.clone());
        let save = move || log.save_snapshot(&kept, &bytes);
        blocking(save, |e| StorageIOError::write_snapshot(None, e)).await?;
        let mut applied = self.applied();
        self.registry.replace(data);
        applied.last = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let log = self.log.clone();
        let kept = blocking(
            move || log.current_snapshot(),
            |e| StorageIOError::read_snapshot(None, e),
        )
        .await?;
        Ok(kept.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
