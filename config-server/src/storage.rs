//! Documents, their history and schemas in `redb`. Every write is one transaction committed with
//! fsync (redb's immediate durability) before it is acknowledged, so an acknowledged write
//! survives `kill -9` and power loss.

use std::path::Path;
use std::sync::Arc;

use msakit_api::audit::AuditEntry;
use msakit_raft::NodeId;
use msakit_raft::kept_snapshot::{self, KeptSnapshotError, StoredSnapshot};
use msakit_raft::openraft::{BasicNode, SnapshotMeta};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::format::{AuditRecord, StoredVersion};

/// `{document key}\0{version:020}` → [`StoredVersion`] JSON.
const VERSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("versions");
/// `{document key}` → its newest version number.
const HEADS: TableDefinition<'_, &str, u64> = TableDefinition::new("heads");
/// `{application}` → its JSON Schema.
const SCHEMAS: TableDefinition<'_, &str, &str> = TableDefinition::new("schemas");
/// `{document key}\0{path}` → a plain-text file served with placeholders filled.
const FILES: TableDefinition<'_, &str, &str> = TableDefinition::new("files");
/// `index` → the last change index; `audit` → the last audit entry's number.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// Audit entry number → [`AuditRecord`] JSON, written in the same transaction as the write.
const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");

/// In cluster mode: `applied` → the last Raft log id applied, `membership` → the last membership;
/// each written in the same transaction as the change it describes, so a restarted node never
/// applies an entry twice. The last snapshot is kept in a table of its own
/// ([`msakit_raft::kept_snapshot`]), written in the same transaction as the state it restores.
pub(crate) const RAFT_STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_state");

impl Storage {
    /// Begins a change. In cluster mode (`applied`: the serialised Raft log id of the entry
    /// being applied) the entry's id is written in the same transaction, and the transaction is
    /// committed with an fsync only if none was for [`APPLIED_DURABLE_EVERY`]: the entry is
    /// already durable in the Raft log (a file of its own), which keeps every entry after the
    /// last snapshot, and a crash loses a change and its `applied` id together — so the node
    /// applies the entry again from the log, never twice and never not at all. A single node's
    /// change is fsync'd before it is acknowledged.
    fn begin_change(&self, applied: Option<&[u8]>) -> Result<redb::WriteTransaction, StorageError> {
        let mut write = self.db.begin_write().map_err(wrap)?;
        if let Some(applied) = applied {
            let mut last_fsync = self.last_fsync.lock().unwrap_or_else(|e| e.into_inner());
            if last_fsync.elapsed() < APPLIED_DURABLE_EVERY {
                write.set_durability(redb::Durability::None).map_err(wrap)?;
            } else {
                *last_fsync = std::time::Instant::now();
            }
            drop(last_fsync);
            write
                .open_table(RAFT_STATE)
                .map_err(wrap)?
                .insert("applied", applied)
                .map_err(wrap)?;
        }
        Ok(write)
    }
}

/// One entry of the Raft state, if present.
pub(crate) type RaftEntry = Option<Vec<u8>>;

/// Every table of the config state, for a Raft snapshot: rows as raw bytes per table.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Dump {
    versions: Vec<(String, String)>,
    heads: Vec<(String, u64)>,
    schemas: Vec<(String, String)>,
    files: Vec<(String, String)>,
    meta: Vec<(String, u64)>,
    audit: Vec<(u64, String)>,
}

/// Appends `entries` to the audit table inside `write`, numbering them after the last one.
fn append_audit(
    write: &redb::WriteTransaction,
    entries: &[AuditRecord],
) -> Result<(), StorageError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut meta = write.open_table(META).map_err(wrap)?;
    let mut seq = meta.get("audit").map_err(wrap)?.map_or(0, |v| v.value());
    let mut audit = write.open_table(AUDIT).map_err(wrap)?;
    for entry in entries {
        seq += 1;
        let entry = AuditRecord {
            seq,
            ..entry.clone()
        };
        let bytes = serde_json::to_vec(&entry).expect("plain data serialises");
        audit.insert(seq, bytes.as_slice()).map_err(wrap)?;
    }
    meta.insert("audit", seq).map_err(wrap)?;
    Ok(())
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database failed.
    #[error("config store: {0}")]
    Database(#[from] redb::Error),
    /// A stored record cannot be read (written by a newer build, or damaged): refused rather
    /// than skipped, so nothing stored is silently lost.
    #[error("config store: the record {key:?} cannot be read: {source}")]
    Unreadable {
        /// The record's key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The Raft snapshot kept here cannot be read or written.
    #[error("config store: {0}")]
    Snapshot(#[from] KeptSnapshotError),
}

impl StorageError {
    /// A failure to report to several writers (the original is reported once, in the log).
    pub(crate) fn failed(message: &str) -> Self {
        StorageError::Database(redb::Error::Io(std::io::Error::other(message.to_owned())))
    }

    /// The blocking task running a store operation failed (panicked or was cancelled).
    pub(crate) fn task_failed(e: tokio::task::JoinError) -> Self {
        StorageError::Database(redb::Error::Io(std::io::Error::other(e)))
    }
}

/// A stored record, read from its JSON.
fn read_record<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|source| StorageError::Unreadable {
        key: key.replace('\0', "/"),
        source,
    })
}

/// Runs a store operation off the async threads (redb commits wait for fsync).
pub(crate) async fn blocking<T: Send + 'static>(
    operation: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(operation)
        .await
        .map_err(StorageError::task_failed)?
}

fn wrap<E: Into<redb::Error>>(e: E) -> StorageError {
    StorageError::Database(e.into())
}

fn version_key(doc: &str, version: u64) -> String {
    format!("{doc}\0{version:020}")
}

/// How long a cluster node's applied changes may go without an fsync (see [`begin_change`]).
const APPLIED_DURABLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The durable store.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    db: Arc<Database>,
    /// When a change was last committed with an fsync.
    last_fsync: Arc<std::sync::Mutex<std::time::Instant>>,
}

/// Everything read back at start.
pub(crate) struct Loaded {
    pub(crate) heads: Vec<(String, StoredVersion)>,
    pub(crate) schemas: Vec<(String, String)>,
    pub(crate) index: u64,
}

impl Storage {
    /// Opens (or creates) `config.redb` in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| wrap(redb::Error::Io(e)))?;
        // Reads are served from memory (the heads); the page cache only serves history and
        // commits, so a bounded one keeps memory flat as history grows (redb's default is 1 GiB).
        let db = redb::Builder::new()
            .set_cache_size(32 * 1024 * 1024)
            .create(dir.join("config.redb"))
            .map_err(wrap)?;
        let write = db.begin_write().map_err(wrap)?;
        write.open_table(VERSIONS).map_err(wrap)?;
        write.open_table(HEADS).map_err(wrap)?;
        write.open_table(SCHEMAS).map_err(wrap)?;
        write.open_table(FILES).map_err(wrap)?;
        write.open_table(META).map_err(wrap)?;
        write.open_table(AUDIT).map_err(wrap)?;
        write.open_table(RAFT_STATE).map_err(wrap)?;
        kept_snapshot::move_earlier_snapshot(&write, RAFT_STATE)?;
        write.commit().map_err(wrap)?;
        Ok(Self {
            db: Arc::new(db),
            last_fsync: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        })
    }

    /// The database, shared with the Raft log in cluster mode.
    pub(crate) fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// The newest version of every document, every schema, and the last index.
    pub(crate) fn load(&self) -> Result<Loaded, StorageError> {
        let read = self.db.begin_read().map_err(wrap)?;
        let heads_table = read.open_table(HEADS).map_err(wrap)?;
        let versions = read.open_table(VERSIONS).map_err(wrap)?;
        let mut heads = Vec::new();
        for row in heads_table.iter().map_err(wrap)? {
            let (doc, version) = row.map_err(wrap)?;
            let key = version_key(doc.value(), version.value());
            if let Some(bytes) = versions.get(key.as_str()).map_err(wrap)? {
                heads.push((doc.value().to_owned(), read_record(&key, bytes.value())?));
            }
        }
        let mut schemas = Vec::new();
        for row in read
            .open_table(SCHEMAS)
            .map_err(wrap)?
            .iter()
            .map_err(wrap)?
        {
            let (app, schema) = row.map_err(wrap)?;
            schemas.push((app.value().to_owned(), schema.value().to_owned()));
        }
        let index = read
            .open_table(META)
            .map_err(wrap)?
            .get("index")
            .map_err(wrap)?
            .map_or(0, |v| v.value());
        Ok(Loaded {
            heads,
            schemas,
            index,
        })
    }

    /// Appends versions (in order), each becoming its document's head, in one transaction: one
    /// fsync for the whole batch (in cluster mode, at most one a second: [`Self::begin_change`]).
    pub(crate) fn append_batch(
        &self,
        rows: &[(String, &StoredVersion)],
        audit: &[AuditRecord],
        applied: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let write = self.begin_change(applied)?;
        append_audit(&write, audit)?;
        {
            let mut versions = write.open_table(VERSIONS).map_err(wrap)?;
            let mut heads = write.open_table(HEADS).map_err(wrap)?;
            let mut last = 0;
            for (doc, stored) in rows {
                let bytes = serde_json::to_vec(stored).expect("plain data serialises");
                versions
                    .insert(version_key(doc, stored.version).as_str(), bytes.as_slice())
                    .map_err(wrap)?;
                heads.insert(doc.as_str(), stored.version).map_err(wrap)?;
                last = last.max(stored.index);
            }
            write
                .open_table(META)
                .map_err(wrap)?
                .insert("index", last)
                .map_err(wrap)?;
        }
        write.commit().map_err(wrap)
    }

    /// One version of a document.
    pub(crate) fn version(
        &self,
        doc: &str,
        version: u64,
    ) -> Result<Option<StoredVersion>, StorageError> {
        let read = self.db.begin_read().map_err(wrap)?;
        let table = read.open_table(VERSIONS).map_err(wrap)?;
        let found = table
            .get(version_key(doc, version).as_str())
            .map_err(wrap)?;
        found
            .map(|bytes| read_record(&version_key(doc, version), bytes.value()))
            .transpose()
    }

    /// Every version of a document, newest first.
    pub(crate) fn history(&self, doc: &str) -> Result<Vec<StoredVersion>, StorageError> {
        let read = self.db.begin_read().map_err(wrap)?;
        let table = read.open_table(VERSIONS).map_err(wrap)?;
        let (from, to) = (format!("{doc}\0"), format!("{doc}\u{1}"));
        let mut out = Vec::new();
        for row in table.range(from.as_str()..to.as_str()).map_err(wrap)? {
            let (key, bytes) = row.map_err(wrap)?;
            out.push(read_record(key.value(), bytes.value())?);
        }
        out.reverse();
        Ok(out)
    }

    /// Stores (or, with `None`, removes) a plain-text file, durably; says whether one was there.
    pub(crate) fn put_file(
        &self,
        doc: &str,
        path: &str,
        content: Option<&str>,
        audit: &AuditRecord,
        applied: Option<&[u8]>,
    ) -> Result<bool, StorageError> {
        let key = format!("{doc}\0{path}");
        let write = self.begin_change(applied)?;
        let existed = {
            let mut table = write.open_table(FILES).map_err(wrap)?;
            match content {
                Some(text) => table.insert(key.as_str(), text).map_err(wrap)?.is_some(),
                None => table.remove(key.as_str()).map_err(wrap)?.is_some(),
            }
        };
        if content.is_some() || existed {
            append_audit(&write, std::slice::from_ref(audit))?;
        }
        write.commit().map_err(wrap)?;
        Ok(existed)
    }

    /// A stored plain-text file.
    pub(crate) fn file(&self, doc: &str, path: &str) -> Result<Option<String>, StorageError> {
        let read = self.db.begin_read().map_err(wrap)?;
        let table = read.open_table(FILES).map_err(wrap)?;
        let found = table.get(format!("{doc}\0{path}").as_str()).map_err(wrap)?;
        Ok(found.map(|v| v.value().to_owned()))
    }

    /// Sets an application's schema, durably.
    pub(crate) fn put_schema(
        &self,
        application: &str,
        schema: &str,
        audit: &AuditRecord,
        applied: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let write = self.begin_change(applied)?;
        append_audit(&write, std::slice::from_ref(audit))?;
        write
            .open_table(SCHEMAS)
            .map_err(wrap)?
            .insert(application, schema)
            .map_err(wrap)?;
        write.commit().map_err(wrap)
    }

    /// Up to `limit` audit entries after `since`, oldest first.
    pub(crate) fn audit(&self, since: u64, limit: usize) -> Result<Vec<AuditEntry>, StorageError> {
        let read = self.db.begin_read().map_err(wrap)?;
        let table = match read.open_table(AUDIT) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(wrap(e)),
        };
        let mut out = Vec::new();
        for row in table
            .range(since.saturating_add(1)..)
            .map_err(wrap)?
            .take(limit)
        {
            let (seq, bytes) = row.map_err(wrap)?;
            let record: AuditRecord =
                read_record(&format!("audit {}", seq.value()), bytes.value())?;
            out.push(record.into());
        }
        Ok(out)
    }
}

fn rows<K, V, KO, VO>(
    read: &redb::ReadTransaction,
    table: TableDefinition<'_, K, V>,
    mut map: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> (KO, VO),
) -> Result<Vec<(KO, VO)>, StorageError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let table = read.open_table(table).map_err(wrap)?;
    let mut out = Vec::new();
    for row in table.iter().map_err(wrap)? {
        let (key, value) = row.map_err(wrap)?;
        out.push(map(key.value(), value.value()));
    }
    Ok(out)
}

impl Storage {
    /// Reads one entry of the Raft state (`applied`, `membership`, …).
    pub(crate) fn raft_state(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let read = self.db.begin_read().map_err(wrap)?;
        let table = read.open_table(RAFT_STATE).map_err(wrap)?;
        Ok(table.get(name).map_err(wrap)?.map(|v| v.value().to_vec()))
    }

    /// Writes entries of the Raft state in one durable transaction.
    pub(crate) fn set_raft_state(&self, entries: &[(&str, &[u8])]) -> Result<(), StorageError> {
        let write = self.db.begin_write().map_err(wrap)?;
        {
            let mut table = write.open_table(RAFT_STATE).map_err(wrap)?;
            for (name, value) in entries {
                table.insert(*name, *value).map_err(wrap)?;
            }
        }
        write.commit().map_err(wrap)
    }

    /// Keeps a snapshot unless the one kept already reaches as far, in one transaction: a
    /// snapshot built while a newer one was installed must not replace it.
    pub(crate) fn keep_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let write = self.db.begin_write().map_err(wrap)?;
        if kept_snapshot::keep_snapshot(&write, meta, data)? {
            write.commit().map_err(wrap)?;
        }
        Ok(())
    }

    /// The snapshot kept last, if any.
    pub(crate) fn kept_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let read = self.db.begin_read().map_err(wrap)?;
        Ok(kept_snapshot::kept_snapshot(&read)?)
    }

    /// Every row of the config state, read in one transaction (a consistent view), with the
    /// Raft state entries `names` read in the same transaction.
    pub(crate) fn dump(&self, names: &[&str]) -> Result<(Dump, Vec<RaftEntry>), StorageError> {
        let read = self.db.begin_read().map_err(wrap)?;
        let dump = Dump {
            versions: rows(&read, VERSIONS, |k, v| {
                (k.to_owned(), String::from_utf8_lossy(v).into_owned())
            })?,
            heads: rows(&read, HEADS, |k, v| (k.to_owned(), v))?,
            schemas: rows(&read, SCHEMAS, |k, v| (k.to_owned(), v.to_owned()))?,
            files: rows(&read, FILES, |k, v| (k.to_owned(), v.to_owned()))?,
            meta: rows(&read, META, |k, v| (k.to_owned(), v))?,
            audit: rows(&read, AUDIT, |k, v| {
                (k, String::from_utf8_lossy(v).into_owned())
            })?,
        };
        let state = read.open_table(RAFT_STATE).map_err(wrap)?;
        let mut found = Vec::new();
        for name in names {
            found.push(state.get(*name).map_err(wrap)?.map(|v| v.value().to_vec()));
        }
        Ok((dump, found))
    }

    /// Replaces the whole config state with `dump`, sets the Raft state `entries` and keeps
    /// `snapshot` (the one `dump` came from, if any), in one durable transaction.
    pub(crate) fn restore(
        &self,
        dump: &Dump,
        entries: &[(&str, &[u8])],
        snapshot: Option<(&SnapshotMeta<NodeId, BasicNode>, &[u8])>,
    ) -> Result<(), StorageError> {
        let write = self.db.begin_write().map_err(wrap)?;
        if let Some((meta, data)) = snapshot {
            kept_snapshot::keep_snapshot(&write, meta, data)?;
        }
        {
            let mut versions = write.open_table(VERSIONS).map_err(wrap)?;
            versions.retain(|_, _| false).map_err(wrap)?;
            for (k, v) in &dump.versions {
                versions.insert(k.as_str(), v.as_bytes()).map_err(wrap)?;
            }
            let mut heads = write.open_table(HEADS).map_err(wrap)?;
            heads.retain(|_, _| false).map_err(wrap)?;
            for (k, v) in &dump.heads {
                heads.insert(k.as_str(), *v).map_err(wrap)?;
            }
            let mut schemas = write.open_table(SCHEMAS).map_err(wrap)?;
            schemas.retain(|_, _| false).map_err(wrap)?;
            for (k, v) in &dump.schemas {
                schemas.insert(k.as_str(), v.as_str()).map_err(wrap)?;
            }
            let mut files = write.open_table(FILES).map_err(wrap)?;
            files.retain(|_, _| false).map_err(wrap)?;
            for (k, v) in &dump.files {
                files.insert(k.as_str(), v.as_str()).map_err(wrap)?;
            }
            let mut meta = write.open_table(META).map_err(wrap)?;
            meta.retain(|_, _| false).map_err(wrap)?;
            for (k, v) in &dump.meta {
                meta.insert(k.as_str(), *v).map_err(wrap)?;
            }
            let mut audit = write.open_table(AUDIT).map_err(wrap)?;
            audit.retain(|_, _| false).map_err(wrap)?;
            for (k, v) in &dump.audit {
                audit.insert(*k, v.as_bytes()).map_err(wrap)?;
            }
            let mut state = write.open_table(RAFT_STATE).map_err(wrap)?;
            for (name, value) in entries {
                state.insert(*name, *value).map_err(wrap)?;
            }
        }
        write.commit().map_err(wrap)
    }
}
