//! Durable registrations in `redb`, written behind the registry by one task.
//!
//! Every change the registry commits is sent here as a put or a delete; the task drains what has
//! queued up and writes it in one transaction, committed with fsync (redb's immediate
//! durability). Heartbeats are not written: a restored instance gets one lease to heartbeat
//! again.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc;

use crate::registry::{PersistOp, StoredInstance};

const INSTANCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("instances");

/// The registry's durable store.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: Arc<Database>,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[error("registry store: {0}")]
pub struct StoreError(#[from] redb::Error);

fn wrap<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError(e.into())
}

impl Store {
    /// Opens (or creates) `registry.redb` in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(redb::Error::Io(e)))?;
        let db = Database::create(dir.join("registry.redb")).map_err(wrap)?;
        let write = db.begin_write().map_err(wrap)?;
        write.open_table(INSTANCES).map_err(wrap)?;
        write.commit().map_err(wrap)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Every stored instance. Records that no longer parse are skipped with a warning.
    pub(crate) fn load(&self) -> Result<Vec<StoredInstance>, StoreError> {
        let read = self.db.begin_read().map_err(wrap)?;
        let table = read.open_table(INSTANCES).map_err(wrap)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(wrap)? {
            let (key, value) = row.map_err(wrap)?;
            match serde_json::from_slice(value.value()) {
                Ok(instance) => out.push(instance),
                Err(e) => {
                    tracing::warn!(key = key.value(), error = %e, "skipping unreadable record")
                }
            }
        }
        Ok(out)
    }

    /// Applies operations in one durable transaction.
    fn apply(&self, ops: &[PersistOp]) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(wrap)?;
        {
            let mut table = write.open_table(INSTANCES).map_err(wrap)?;
            for op in ops {
                match op {
                    PersistOp::Put(key, value) => {
                        table.insert(key.as_str(), value.as_slice()).map_err(wrap)?;
                    }
                    PersistOp::Delete(key) => {
                        table.remove(key.as_str()).map_err(wrap)?;
                    }
                }
            }
        }
        write.commit().map_err(wrap)
    }

    /// Writes what arrives on `ops` until every sender is gone, batching what queues up.
    pub(crate) async fn run(self, mut ops: mpsc::UnboundedReceiver<PersistOp>) {
        let mut batch = Vec::new();
        while ops.recv_many(&mut batch, 1024).await > 0 {
            let store = self.clone();
            let work = std::mem::take(&mut batch);
            let result = tokio::task::spawn_blocking(move || store.apply(&work)).await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "could not persist registry changes"),
                Err(e) => tracing::error!(error = %e, "registry persistence task failed"),
            }
        }
    }
}
