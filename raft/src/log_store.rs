//! The Raft log and vote, in the server's own redb file: one fsync'd transaction per append,
//! vote or truncation, so what Raft was told is durable is durable. State machines that live
//! in memory keep their last snapshot here too (in its own table: [`crate::kept_snapshot`]).

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, BasicNode, Entry, LogId, LogState, RaftLogReader, SnapshotMeta, StorageError,
    StorageIOError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kept_snapshot::{self, StoredSnapshot};
use crate::{NodeId, TypeConfig};

/// Log index → entry (JSON).
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
/// `vote`, `committed`, `last_purged` → JSON (an earlier build kept the snapshot here too).
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_log_meta");

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

fn any<E: std::error::Error + 'static>(e: E) -> AnyError {
    AnyError::new(&e)
}

/// Runs `work` on a blocking thread (redb waits for fsync); a failure, or the thread's panic,
/// becomes `kind`'s storage error. For state machines too.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::result::Result<T, AnyError> + Send + 'static,
    kind: fn(AnyError) -> StorageIOError<NodeId>,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(kind(e).into()),
        Err(e) => Err(kind(any(e)).into()),
    }
}

fn get<T: DeserializeOwned>(db: &Database, name: &str) -> std::result::Result<Option<T>, AnyError> {
    let read = db.begin_read().map_err(any)?;
    let table = read.open_table(META).map_err(any)?;
    match table.get(name).map_err(any)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value()).map_err(any)?)),
        None => Ok(None),
    }
}

fn put<T: Serialize>(db: &Database, name: &str, value: &T) -> std::result::Result<(), AnyError> {
    let bytes = serde_json::to_vec(value).map_err(any)?;
    let write = db.begin_write().map_err(any)?;
    write
        .open_table(META)
        .map_err(any)?
        .insert(name, bytes.as_slice())
        .map_err(any)?;
    write.commit().map_err(any)
}

/// The log store; cheap to clone.
pub struct LogStore<C> {
    db: Arc<Database>,
    types: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: Arc::clone(&self.db),
            types: PhantomData,
        }
    }
}

impl<C> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl<C> LogStore<C> {
    /// Over `db` (the server's database); a snapshot an earlier build kept among the log's
    /// metadata is moved to its own table.
    pub fn new(db: Arc<Database>) -> std::result::Result<Self, AnyError> {
        let write = db.begin_write().map_err(any)?;
        write.open_table(LOG).map_err(any)?;
        kept_snapshot::move_earlier_snapshot(&write, META).map_err(any)?;
        write.commit().map_err(any)?;
        Ok(Self {
            db,
            types: PhantomData,
        })
    }

    /// Keeps `meta` and `data` as the current snapshot, in one fsync'd transaction (blocking) —
    /// unless the snapshot kept already reaches as far: a snapshot built while a newer one was
    /// installed must not replace it (the log before the newer one may be gone).
    pub fn save_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: &[u8],
    ) -> std::result::Result<(), AnyError> {
        let write = self.db.begin_write().map_err(any)?;
        if kept_snapshot::keep_snapshot(&write, meta, data).map_err(any)? {
            write.commit().map_err(any)?;
        }
        Ok(())
    }

    /// The snapshot [`save_snapshot`](Self::save_snapshot) kept last, if any (blocking).
    pub fn current_snapshot(&self) -> std::result::Result<Option<StoredSnapshot>, AnyError> {
        let read = self.db.begin_read().map_err(any)?;
        kept_snapshot::kept_snapshot(&read).map_err(any)
    }
}

impl<C: TypeConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>> {
        let read = || -> std::result::Result<Vec<Entry<C>>, AnyError> {
            let read = self.db.begin_read().map_err(any)?;
            let table = read.open_table(LOG).map_err(any)?;
            let mut entries = Vec::new();
            for row in table.range(range).map_err(any)? {
                let (_, bytes) = row.map_err(any)?;
                entries.push(serde_json::from_slice(bytes.value()).map_err(any)?);
            }
            Ok(entries)
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl<C: TypeConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>> {
        let db = Arc::clone(&self.db);
        blocking(
            move || {
                let purged: Option<LogId<NodeId>> = get(&db, "last_purged")?;
                let read = db.begin_read().map_err(any)?;
                let table = read.open_table(LOG).map_err(any)?;
                let last = match table.last().map_err(any)? {
                    Some((_, bytes)) => Some(
                        serde_json::from_slice::<Entry<C>>(bytes.value())
                            .map_err(any)?
                            .log_id,
                    ),
                    None => None,
                };
                Ok(LogState {
                    last_purged_log_id: purged,
                    last_log_id: last.or(purged),
                })
            },
            StorageIOError::read_logs,
        )
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        let (db, vote) = (Arc::clone(&self.db), *vote);
        blocking(move || put(&db, "vote", &vote), StorageIOError::write_vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        get(&self.db, "vote").map_err(|e| StorageIOError::read_vote(e).into())
    }

    /// Kept without an fsync of its own: the commit index is a lower bound a leader
    /// re-establishes, so losing the latest one in a crash loses nothing; the next append's
    /// fsync makes it durable with the entries.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        let db = Arc::clone(&self.db);
        blocking(
            move || {
                let bytes = serde_json::to_vec(&committed).map_err(any)?;
                let mut write = db.begin_write().map_err(any)?;
                write.set_durability(Durability::None).map_err(any)?;
                write
                    .open_table(META)
                    .map_err(any)?
                    .insert("committed", bytes.as_slice())
                    .map_err(any)?;
                write.commit().map_err(any)
            },
            StorageIOError::write,
        )
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        get::<Option<LogId<NodeId>>>(&self.db, "committed")
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<C>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        let db = Arc::clone(&self.db);
        let written = blocking(
            move || {
                let write = db.begin_write().map_err(any)?;
                {
                    let mut table = write.open_table(LOG).map_err(any)?;
                    for entry in &entries {
                        let bytes = serde_json::to_vec(entry).map_err(any)?;
                        table
                            .insert(entry.log_id.index, bytes.as_slice())
                            .map_err(any)?;
                    }
                }
                write.commit().map_err(any)
            },
            StorageIOError::write_logs,
        )
        .await;
        // Durable (fsync'd by the commit) before Raft is told so.
        match &written {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        written
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let db = Arc::clone(&self.db);
        blocking(
            move || {
                let write = db.begin_write().map_err(any)?;
                write
                    .open_table(LOG)
                    .map_err(any)?
                    .retain_in(log_id.index.., |_, _| false)
                    .map_err(any)?;
                write.commit().map_err(any)
            },
            StorageIOError::write_logs,
        )
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let db = Arc::clone(&self.db);
        blocking(
            move || {
                let bytes = serde_json::to_vec(&Some(log_id)).map_err(any)?;
                let write = db.begin_write().map_err(any)?;
                write
                    .open_table(META)
                    .map_err(any)?
                    .insert("last_purged", bytes.as_slice())
                    .map_err(any)?;
                write
                    .open_table(LOG)
                    .map_err(any)?
                    .retain_in(..=log_id.index, |_, _| false)
                    .map_err(any)?;
                write.commit().map_err(any)
            },
            StorageIOError::write_logs,
        )
        .await
    }
}
