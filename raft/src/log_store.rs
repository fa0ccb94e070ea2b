//! The Raft log and vote, in a redb file of their own beside the server's database: one fsync'd
//! transaction per append, vote or truncation, so what Raft was told is durable is durable.
//! State machines that live in memory keep their last snapshot here too (in its own table:
//! [`crate::kept_snapshot`]).
//!
//! A file of its own, because an fsync writes every page changed since the last one: in the
//! server's database, each append also wrote what the state machine had changed since, and a
//! state machine that keeps its state on disk commits it without an fsync of its own (the log
//! is the durable record), making it durable on its own schedule. Builds before kept the log in
//! the server's database; [`LogStore::open`] moves it over.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, BasicNode, Entry, LogId, LogState, RaftLogReader, SnapshotMeta, StorageError,
    StorageIOError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kept_snapshot::{self, StoredSnapshot};
use crate::{NodeId, TypeConfig};

/// The log's file name, in a server's data directory.
pub const RAFT_LOG_FILE: &str = "raft-log.redb";

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

/// Moves the log and its metadata (and a snapshot kept among them) out of `earlier` into `log`:
/// copied durably first, then dropped from `earlier`, so a crash in between copies them again.
fn move_earlier_log(earlier: &Database, log: &Database) -> std::result::Result<(), AnyError> {
    let earlier_tables = earlier
        .begin_read()
        .map_err(any)?
        .list_tables()
        .map_err(any)?
        .filter(|t| t.name() == LOG.name() || t.name() == META.name())
        .count();
    if earlier_tables == 0 {
        return Ok(());
    }
    let (entries, meta) = log_rows(earlier)?;
    // What the log's own file already holds: nothing (the move to do), or exactly what the
    // earlier tables hold (a move that stopped before dropping them). Anything else is two
    // histories — a build from before the move ran after one from after it — and merging them
    // could take back a vote: refused.
    let held = log_rows(log)?;
    let earlier_meta: Vec<(String, Vec<u8>)> = meta
        .iter()
        .filter(|(name, _)| !name.starts_with("snapshot_"))
        .cloned()
        .collect();
    let already_moved = held.0 == entries && held.1 == earlier_meta;
    if !already_moved && (!held.0.is_empty() || !held.1.is_empty()) {
        return Err(any(std::io::Error::other(
            "both the server's database and raft-log.redb hold a Raft log (was this node run by \
             a build from before raft-log.redb after one from after it?); refusing to merge two \
             histories: remove the one that is not this node's latest",
        )));
    }
    let write = log.begin_write().map_err(any)?;
    {
        let mut table = write.open_table(LOG).map_err(any)?;
        for (index, bytes) in &entries {
            table.insert(*index, bytes.as_slice()).map_err(any)?;
        }
        let mut table = write.open_table(META).map_err(any)?;
        for (name, bytes) in &meta {
            table.insert(name.as_str(), bytes.as_slice()).map_err(any)?;
        }
    }
    kept_snapshot::move_earlier_snapshot(&write, META).map_err(any)?;
    write.commit().map_err(any)?;
    let write = earlier.begin_write().map_err(any)?;
    write.delete_table(LOG).map_err(any)?;
    write.delete_table(META).map_err(any)?;
    write.commit().map_err(any)?;
    tracing::info!(
        entries = entries.len(),
        "moved the Raft log out of the server's database into a file of its own"
    );
    Ok(())
}

/// The log's entries and metadata rows in `db`, none where a table does not exist.
#[allow(clippy::type_complexity)]
fn log_rows(
    db: &Database,
) -> std::result::Result<(Vec<(u64, Vec<u8>)>, Vec<(String, Vec<u8>)>), AnyError> {
    let read = db.begin_read().map_err(any)?;
    let entries = match read.open_table(LOG) {
        Ok(table) => table
            .iter()
            .map_err(any)?
            .map(|row| {
                let (k, v) = row.map_err(any)?;
                Ok((k.value(), v.value().to_vec()))
            })
            .collect::<std::result::Result<_, AnyError>>()?,
        Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
        Err(e) => return Err(any(e)),
    };
    let meta = match read.open_table(META) {
        Ok(table) => table
            .iter()
            .map_err(any)?
            .map(|row| {
                let (k, v) = row.map_err(any)?;
                Ok((k.value().to_owned(), v.value().to_vec()))
            })
            .collect::<std::result::Result<_, AnyError>>()?,
        Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
        Err(e) => return Err(any(e)),
    };
    Ok((entries, meta))
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
    /// Opens (or creates) the log in `path`, moving into it the log, vote and snapshot an
    /// earlier build kept in `earlier` (the server's database).
    pub fn open(path: &Path, earlier: &Database) -> std::result::Result<Self, AnyError> {
        let db = redb::Builder::new()
            .set_cache_size(64 * 1024 * 1024)
            .create(path)
            .map_err(any)?;
        let write = db.begin_write().map_err(any)?;
        write.open_table(LOG).map_err(any)?;
        write.open_table(META).map_err(any)?;
        kept_snapshot::move_earlier_snapshot(&write, META).map_err(any)?;
        write.commit().map_err(any)?;
        move_earlier_log(earlier, &db)?;
        Ok(Self {
            db: Arc::new(db),
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

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

    use super::*;

    #[test]
    fn a_log_an_earlier_build_kept_in_the_servers_database_is_moved_to_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = Database::create(dir.path().join("server.redb")).unwrap();
        let write = earlier.begin_write().unwrap();
        {
            let mut log = write.open_table(LOG).unwrap();
            log.insert(1, b"one".as_slice()).unwrap();
            log.insert(2, b"two".as_slice()).unwrap();
            let mut meta = write.open_table(META).unwrap();
            meta.insert("vote", b"the vote".as_slice()).unwrap();
            meta.insert("snapshot_meta", br#"{"last_log_id":null,"last_membership":{"log_id":null,"membership":{"configs":[],"nodes":{}}},"snapshot_id":"empty"}"#.as_slice()).unwrap();
            meta.insert("snapshot_data", b"state".as_slice()).unwrap();
        }
        write.commit().unwrap();

        let store = LogStore::<()>::open(&dir.path().join(RAFT_LOG_FILE), &earlier).unwrap();
        let read = store.db.begin_read().unwrap();
        let log = read.open_table(LOG).unwrap();
        let entries: Vec<(u64, Vec<u8>)> = log
            .iter()
            .unwrap()
            .map(|row| {
                let (k, v) = row.unwrap();
                (k.value(), v.value().to_vec())
            })
            .collect();
        assert_eq!(entries, [(1, b"one".to_vec()), (2, b"two".to_vec())]);
        let meta = read.open_table(META).unwrap();
        assert_eq!(meta.get("vote").unwrap().unwrap().value(), b"the vote");
        assert!(meta.get("snapshot_data").unwrap().is_none());
        let (_, data) = store.current_snapshot().unwrap().unwrap();
        assert_eq!(data, b"state");

        let tables: Vec<String> = earlier
            .begin_read()
            .unwrap()
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        assert!(tables.is_empty(), "left behind: {tables:?}");

        // Opened again (a restart), nothing moves and nothing is lost.
        drop((read, store));
        let store = LogStore::<()>::open(&dir.path().join(RAFT_LOG_FILE), &earlier).unwrap();
        let read = store.db.begin_read().unwrap();
        assert_eq!(read.open_table(LOG).unwrap().len().unwrap(), 2);
        drop((read, store));

        // A build from before the move ran since, with a log of its own: never merged.
        let write = earlier.begin_write().unwrap();
        write
            .open_table(LOG)
            .unwrap()
            .insert(1, b"another one".as_slice())
            .unwrap();
        write.commit().unwrap();
        let refused = LogStore::<()>::open(&dir.path().join(RAFT_LOG_FILE), &earlier);
        assert!(refused.is_err(), "two histories were merged");
    }

    #[test]
    fn a_move_that_stopped_before_dropping_the_earlier_log_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = Database::create(dir.path().join("server.redb")).unwrap();
        let fill = |db: &Database| {
            let write = db.begin_write().unwrap();
            {
                let mut log = write.open_table(LOG).unwrap();
                log.insert(1, b"one".as_slice()).unwrap();
                let mut meta = write.open_table(META).unwrap();
                meta.insert("vote", b"the vote".as_slice()).unwrap();
            }
            write.commit().unwrap();
        };
        fill(&earlier);
        // The copy was made; the earlier tables were not dropped yet.
        let file = dir.path().join(RAFT_LOG_FILE);
        fill(&Database::create(&file).unwrap());
        let store = LogStore::<()>::open(&file, &earlier).unwrap();
        let read = store.db.begin_read().unwrap();
        assert_eq!(read.open_table(LOG).unwrap().len().unwrap(), 1);
        let left = earlier.begin_read().unwrap().list_tables().unwrap().count();
        assert_eq!(left, 0);
    }
}
