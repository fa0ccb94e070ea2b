//! The Raft state machine: the config service's state. Applying an entry runs the same
//! [`Committer`] a single node runs, writing the entry's log id in the same transaction, so a
//! restarted node resumes exactly after the last entry it applied. A snapshot is every table of
//! the config state, read in one transaction.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};

use msakit_raft::blocking;

use super::{NodeId, TypeConfig};
use crate::config_store::{Applied, Committer};
use crate::format::{FormatVersion, SnapshotRecord};
use crate::storage::Storage;

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

fn any<E: std::error::Error + 'static>(e: E) -> AnyError {
    AnyError::new(&e)
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("Raft metadata serialises")
}

fn parse<T: serde::de::DeserializeOwned>(
    bytes: Option<Vec<u8>>,
) -> std::result::Result<Option<T>, AnyError> {
    bytes
        .map(|b| serde_json::from_slice(&b).map_err(any))
        .transpose()
}

/// The state machine; cheap to clone.
#[derive(Clone)]
pub(crate) struct StateMachine {
    store: Storage,
    committer: Committer,
}

impl StateMachine {
    /// Over `store`, applying through `committer`.
    pub(crate) fn new(store: Storage, committer: Committer) -> Self {
        Self { store, committer }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let store = self.store.clone();
        let build = move || -> std::result::Result<_, AnyError> {
            let (dump, found) = store.dump(&["applied", "membership"]).map_err(any)?;
            let mut found = found.into_iter();
            let applied: Option<LogId<NodeId>> =
                parse::<Option<LogId<NodeId>>>(found.next().flatten())?.flatten();
            let membership: StoredMembership<NodeId, BasicNode> =
                parse(found.next().flatten())?.unwrap_or_default();
            let snapshot_id = match &applied {
                Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
                None => "empty".to_owned(),
            };
            let meta = SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
                snapshot_id,
            };
            let record = SnapshotRecord {
                format_version: FormatVersion::CURRENT,
                dump,
            };
            let data = serde_json::to_vec(&record).map_err(any)?;
            store.keep_snapshot(&meta, &data).map_err(any)?;
            Ok((meta, data))
        };
        let (meta, data) = blocking(build, |e| StorageIOError::write_snapshot(None, e)).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let read = || -> std::result::Result<_, AnyError> {
            let applied: Option<LogId<NodeId>> =
                parse::<Option<LogId<NodeId>>>(self.store.raft_state("applied").map_err(any)?)?
                    .flatten();
            let membership =
                parse(self.store.raft_state("membership").map_err(any)?)?.unwrap_or_default();
            Ok((applied, membership))
        };
        read().map_err(|e| StorageIOError::read_state_machine(e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let (store, committer) = (self.store.clone(), self.committer.clone());
        let apply = move || -> std::result::Result<_, AnyError> {
            let mut outcomes = Vec::with_capacity(entries.len());
            for entry in entries {
                let log_id = json(&Some(entry.log_id));
                match entry.payload {
                    EntryPayload::Blank => {
                        store.set_raft_state(&[("applied", &log_id)]).map_err(any)?;
                        outcomes.push(Applied::Done);
                    }
                    EntryPayload::Normal(command) => {
                        outcomes.push(committer.apply(command, Some(&log_id)).map_err(any)?);
                    }
                    EntryPayload::Membership(membership) => {
                        let stored = StoredMembership::new(Some(entry.log_id), membership);
                        store
                            .set_raft_state(&[("applied", &log_id), ("membership", &json(&stored))])
                            .map_err(any)?;
                        outcomes.push(Applied::Done);
                    }
                }
            }
            Ok(outcomes)
        };
        blocking(apply, StorageIOError::write_state_machine).await
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
        let data = snapshot.into_inner();
        let (store, committer, meta) = (self.store.clone(), self.committer.clone(), meta.clone());
        let install = move || -> std::result::Result<_, AnyError> {
            let SnapshotRecord { dump, .. } = serde_json::from_slice(&data).map_err(any)?;
            store
                .restore(
                    &dump,
                    &[
                        ("applied", &json(&meta.last_log_id)),
                        ("membership", &json(&meta.last_membership)),
                    ],
                    Some((&meta, &data)),
                )
                .map_err(any)?;
            committer.reload().map_err(any)
        };
        blocking(install, StorageIOError::write_state_machine).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let store = self.store.clone();
        let kept = blocking(
            move || store.kept_snapshot().map_err(any),
            |e| StorageIOError::read_snapshot(None, e),
        )
        .await?;
        Ok(kept.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
