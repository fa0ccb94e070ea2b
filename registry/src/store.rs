//! Durable registrations in `redb`, written behind the registry by one task.
//!
//! Every change the registry commits is sent here as a put or a delete; the task drains what has
//! queued up and writes it in one transaction, committed with fsync (redb's immediate
//! durability). Heartbeats are not written: a restored instance gets one lease to heartbeat
//! again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::format::StoredInstanceRecord;
use crate::registry::{PersistOp, StoredInstance};

const INSTANCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("instances");
/// `index`: the last registry index stored.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The registry's durable store.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: Arc<Database>,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("registry store: {0}")]
    Database(#[from] redb::Error),
    /// A stored record cannot be read (written by a newer build, or damaged): the registry
    /// refuses to start rather than drop it.
    #[error("registry store: the record of {key} cannot be read: {source}")]
    Unreadable {
        /// The record's key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
}

fn wrap<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Database(e.into())
}

impl Store {
    /// Opens (or creates) `registry.redb` in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| wrap(redb::Error::Io(e)))?;
        // Written behind and read only at start: a small page cache is plenty, and redb's
        // default (1 GiB) would otherwise count against the registry's memory at scale. 4 MiB
        // writes as fast as 32 did (pages missing from it are read from the OS's page cache)
        // and keeps 28 MiB out of the registry's resident memory.
        let db = redb::Builder::new()
            .set_cache_size(4 * 1024 * 1024)
            .create(dir.join("registry.redb"))
            .map_err(wrap)?;
        let write = db.begin_write().map_err(wrap)?;
        write.open_table(INSTANCES).map_err(wrap)?;
        write.open_table(META).map_err(wrap)?;
        write.commit().map_err(wrap)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The database, for a cluster node's Raft log (in tables of its own).
    pub(crate) fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// Every stored instance, and the last index stored. A record that cannot be read is an
    /// error, not skipped.
    pub(crate) fn load(&self) -> Result<(Vec<StoredInstance>, u64), StoreError> {
        let read = self.db.begin_read().map_err(wrap)?;
        let index = read
            .open_table(META)
            .map_err(wrap)?
            .get("index")
            .map_err(wrap)?
            .map_or(0, |v| v.value());
        let table = read.open_table(INSTANCES).map_err(wrap)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(wrap)? {
            let (key, value) = row.map_err(wrap)?;
            let record: StoredInstanceRecord =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Unreadable {
                    key: key.value().to_owned(),
                    source,
                })?;
            out.push(record.into());
        }
        Ok((out, index))
    }

    /// Applies operations in one durable transaction.
    fn apply(&self, ops: &[PersistOp]) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(wrap)?;
        {
            let mut table = write.open_table(INSTANCES).map_err(wrap)?;
            let mut index = 0;
            for op in ops {
                match op {
                    PersistOp::Put(key, stored, at) => {
                        let record = StoredInstanceRecord::from((**stored).clone());
                        let bytes = serde_json::to_vec(&record).expect("plain data serialises");
                        table.insert(key.as_str(), bytes.as_slice()).map_err(wrap)?;
                        index = index.max(*at);
                    }
                    PersistOp::Delete(key, at) => {
                        table.remove(key.as_str()).map_err(wrap)?;
                        index = index.max(*at);
                    }
                }
            }
            write
                .open_table(META)
                .map_err(wrap)?
                .insert("index", index)
                .map_err(wrap)?;
        }
        write.commit().map_err(wrap)
    }

    /// Writes what arrives on `ops`, batching what queues up, until `stop`; then writes what is
    /// still queued and returns. A batch that fails is retried, in order, with growing pauses, so
    /// the store never silently falls out of step with memory.
    pub(crate) async fn run(
        self,
        mut ops: mpsc::UnboundedReceiver<PersistOp>,
        stop: CancellationToken,
    ) {
        let mut batch = Vec::new();
        loop {
            let received = tokio::select! {
                n = ops.recv_many(&mut batch, 1024) => n,
                _ = stop.cancelled() => {
                    // Senders may outlive us (in connections still draining): stop taking new
                    // operations and write what is queued.
                    ops.close();
                    ops.recv_many(&mut batch, usize::MAX).await
                }
            };
            if received == 0 && batch.is_empty() {
                return;
            }
            self.write_batch(std::mem::take(&mut batch), &stop).await;
            if stop.is_cancelled() && ops.is_empty() && ops.is_closed() {
                return;
            }
        }
    }

    async fn write_batch(&self, batch: Vec<PersistOp>, stop: &CancellationToken) {
        let batch = Arc::new(batch);
        let mut pause = Duration::from_millis(50);
        let mut failures = 0;
        loop {
            let (store, work) = (self.clone(), Arc::clone(&batch));
            match tokio::task::spawn_blocking(move || store.apply(&work)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "could not persist registry changes; retrying")
                }
                Err(e) => tracing::error!(error = %e, "registry persistence task failed; retrying"),
            }
            failures += 1;
            if stop.is_cancelled() && failures >= 3 {
                tracing::error!(
                    changes = batch.len(),
                    "giving up on persisting changes at shutdown"
                );
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}
