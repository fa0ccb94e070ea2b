//! Document writes, deletions and rollbacks, committed in groups: every version waiting when a
//! writer gets the lock is decided and written in one fsync'd transaction (one Raft entry in a
//! cluster).

use std::sync::Arc;

use msakit_api::config::{Format, WriteResult};
use tokio::sync::oneshot;

use super::{Applied, ConfigStore, ConfigStoreError, not_found, unix_ms};
use crate::document::DocKey;
use crate::format::{Command, FormatVersion, Proposed, StoredVersion};
use crate::storage::{StorageError, blocking};

/// A version about to be committed: the document, its content, and what made it.
struct NewVersion {
    key: DocKey,
    format: Format,
    content: String,
    kind: VersionKind,
}

/// What made a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionKind {
    /// A write of new content.
    Written,
    /// A deletion: a tombstone, with the history kept.
    Deleted,
    /// A rollback: the content of this earlier version, restored.
    RolledBackTo(u64),
}

/// Where a writer's outcome goes.
type Reply = oneshot::Sender<Result<WriteResult, ConfigStoreError>>;

/// A document version waiting for the next group commit, and where its outcome goes.
pub(super) struct Pending {
    proposed: Proposed,
    reply: Reply,
}

impl ConfigStore {
    /// Writes a new version of a document.
    pub(crate) async fn write(
        &self,
        key: DocKey,
        format: Format,
        content: String,
        author: &str,
        message: &str,
        if_match: Option<u64>,
    ) -> Result<WriteResult, ConfigStoreError> {
        self.check(&key, format, &content)?;
        let version = NewVersion {
            key,
            format,
            content,
            kind: VersionKind::Written,
        };
        self.commit(version, author, message, if_match).await
    }

    /// Deletes a document: a tombstone version, history kept.
    pub(crate) async fn delete(
        &self,
        key: DocKey,
        author: &str,
        message: &str,
        if_match: Option<u64>,
    ) -> Result<WriteResult, ConfigStoreError> {
        let format = {
            let state = self.read();
            match state.heads.get(&key) {
                Some(head) if !head.stored.deleted => head.stored.format,
                _ => return Err(not_found(&key)),
            }
        };
        let version = NewVersion {
            key,
            format,
            content: String::new(),
            kind: VersionKind::Deleted,
        };
        self.commit(version, author, message, if_match).await
    }

    /// Restores an earlier version as a new version; history is never rewritten.
    pub(crate) async fn rollback(
        &self,
        key: DocKey,
        version: u64,
        author: &str,
    ) -> Result<WriteResult, ConfigStoreError> {
        let store = self.store.clone();
        let doc = key.storage_key();
        let old = blocking(move || store.version(&doc, version))
            .await?
            .ok_or_else(|| {
                ConfigStoreError::NotFound(format!("version {version} does not exist"))
            })?;
        if old.deleted {
            return Err(ConfigStoreError::NotFound(format!(
                "version {version} is a deletion; nothing to restore"
            )));
        }
        let message = format!("rollback to version {version}");
        let restored = NewVersion {
            key,
            format: old.format,
            content: old.content,
            kind: VersionKind::RolledBackTo(version),
        };
        self.commit(restored, author, &message, None).await
    }

    /// Commits a new version — with every other version waiting at that moment, in one fsync'd
    /// transaction (group commit). The first writer to get the write lock commits the whole
    /// queue; the writers whose versions it carried find their outcome when they get the lock in
    /// turn. Versions and `If-Match` checks are decided in queue order against the durable heads,
    /// so a batch is exactly the sequence of single commits it replaces, with one fsync.
    async fn commit(
        &self,
        new: NewVersion,
        author: &str,
        message: &str,
        if_match: Option<u64>,
    ) -> Result<WriteResult, ConfigStoreError> {
        let (reply, mut outcome) = oneshot::channel();
        let NewVersion {
            key,
            format,
            content,
            kind,
        } = new;
        let stored = StoredVersion {
            format_version: FormatVersion::CURRENT,
            version: 0,
            format,
            content,
            author: author.to_owned(),
            message: message.to_owned(),
            created_at_ms: unix_ms(),
            deleted: kind == VersionKind::Deleted,
            rolled_back_to: match kind {
                VersionKind::RolledBackTo(version) => Some(version),
                VersionKind::Written | VersionKind::Deleted => None,
            },
            index: 0,
        };
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Pending {
                proposed: Proposed {
                    key,
                    stored,
                    if_match,
                },
                reply,
            });
        let serial = Arc::clone(&self.serial).lock_owned().await;
        if let Ok(done) = outcome.try_recv() {
            return done;
        }
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let writes = Arc::clone(&self.writes);
        // In a task of its own, so a caller that goes away cannot stop a batch half-way: the
        // lock is released only once every outcome is known.
        let _ = tokio::spawn(async move {
            let _serial = serial;
            let (proposals, replies): (Vec<Proposed>, Vec<Reply>) =
                batch.into_iter().map(|p| (p.proposed, p.reply)).unzip();
            match writes.commit(Command::Versions(proposals)).await {
                Ok(Applied::Versions(outcomes)) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome.map_err(ConfigStoreError::from));
                    }
                }
                Ok(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(ConfigStoreError::Storage(StorageError::failed(
                            "unexpected outcome of a commit",
                        ))));
                    }
                }
                Err(error) => {
                    let message = error.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(match &error {
                            ConfigStoreError::NotCommitted(e) => {
                                ConfigStoreError::NotCommitted(Arc::clone(e))
                            }
                            _ => ConfigStoreError::Storage(StorageError::failed(&message)),
                        }));
                    }
                }
            }
        })
        .await;
        outcome.await.unwrap_or_else(|_| {
            Err(ConfigStoreError::Storage(StorageError::failed(
                "the commit did not complete",
            )))
        })
    }
}
