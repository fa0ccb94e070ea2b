//! The store of configuration: validated, versioned writes with compare-and-set; reads of
//! documents and history; the resolved view of (application, profiles, label) in Spring's
//! precedence; and the stream of changes that watchers follow.
//!
//! Writes are serialised by one async mutex (the compare-and-set check and the durable commit
//! happen under it) and take one path, a [`WritePath`]; reads use the in-memory heads under a read
//! lock and never touch the disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use msakit_api::config::{DocumentVersion, HistoryEntry};
use serde_json::Value;
use tokio::sync::{Mutex, broadcast, watch};

use crate::document::{self, DocKey};
use crate::format::{AuditRecord, FormatVersion, StoredVersion};
use crate::secrets::Cipher;
use crate::storage::{Storage, blocking};

mod checks;
mod committer;
mod error;
mod files;
mod group_commit;
mod precedence;
mod schemas;
mod write_path;

pub(crate) use checks::check_file_path;
pub(crate) use committer::{Applied, Change, Committer};
pub(crate) use error::{ConfigStoreError, Refused};
use group_commit::Pending;
pub(crate) use write_path::{Committing, WritePath};

struct Head {
    stored: StoredVersion,
    /// The flattened document; `None` for a tombstone.
    flat: Option<BTreeMap<String, Value>>,
}

#[derive(Default)]
struct State {
    index: u64,
    heads: HashMap<DocKey, Head>,
    schemas: HashMap<String, Arc<jsonschema::Validator>>,
}

/// The store of configuration: documents and their versions, schemas, files and the audit log,
/// read from memory and changed through its [`WritePath`].
pub(crate) struct ConfigStore {
    store: Storage,
    state: Arc<RwLock<State>>,
    /// The one path every change takes.
    writes: Arc<dyn WritePath>,
    /// Held by the writer committing a batch (and by schema writes).
    serial: Arc<Mutex<()>>,
    /// Versions waiting for the next group commit.
    queue: Arc<std::sync::Mutex<Vec<Pending>>>,
    changes: broadcast::Sender<Arc<Change>>,
    index: Arc<watch::Sender<u64>>,
    cipher: Option<Cipher>,
    max_bytes: usize,
}

impl std::fmt::Debug for ConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigStore").finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn key_of(storage_key: &str) -> Option<DocKey> {
    let mut parts = storage_key.split('\0');
    Some(DocKey {
        application: parts.next()?.to_owned(),
        profile: parts.next()?.to_owned(),
        label: parts.next()?.to_owned(),
    })
}

fn flat_of(stored: &StoredVersion) -> Option<BTreeMap<String, Value>> {
    if stored.deleted {
        return None;
    }
    document::parse(stored.format, &stored.content)
        .ok()
        .map(|tree| document::flatten(&tree))
}

impl ConfigStore {
    /// Over the state `committer` loaded and applies changes to, changed through `writes`;
    /// documents of at most `max_bytes`, `{cipher}` values opened with `cipher`.
    pub(crate) fn new(
        committer: &Committer,
        writes: Arc<dyn WritePath>,
        cipher: Option<Cipher>,
        max_bytes: usize,
    ) -> Self {
        Self {
            store: committer.store.clone(),
            state: Arc::clone(&committer.state),
            changes: committer.changes.clone(),
            index: Arc::clone(&committer.index),
            writes,
            serial: Arc::new(Mutex::new(())),
            queue: Arc::new(std::sync::Mutex::new(Vec::new())),
            cipher,
            max_bytes,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The last change index.
    pub(crate) fn index(&self) -> u64 {
        self.read().index
    }

    /// Documents held (tombstones excluded).
    pub(crate) fn document_count(&self) -> usize {
        self.read()
            .heads
            .values()
            .filter(|h| !h.stored.deleted)
            .count()
    }

    /// The secrets key, if configured.
    pub(crate) fn cipher(&self) -> Option<&Cipher> {
        self.cipher.as_ref()
    }

    /// The newest version of a document.
    pub(crate) fn get(&self, key: &DocKey) -> Result<DocumentVersion, ConfigStoreError> {
        let state = self.read();
        match state.heads.get(key) {
            Some(head) if !head.stored.deleted => Ok(to_wire(key, &head.stored)),
            _ => Err(not_found(key)),
        }
    }

    /// Every version of a document, newest first.
    pub(crate) async fn history(
        &self,
        key: &DocKey,
    ) -> Result<Vec<HistoryEntry>, ConfigStoreError> {
        let store = self.store.clone();
        let doc = key.storage_key();
        let versions = blocking(move || store.history(&doc)).await?;
        if versions.is_empty() {
            return Err(not_found(key));
        }
        Ok(versions
            .into_iter()
            .map(|v| HistoryEntry {
                version: v.version,
                author: v.author,
                message: v.message,
                created_at_ms: v.created_at_ms,
                deleted: v.deleted,
                rolled_back_to: v.rolled_back_to,
            })
            .collect())
    }

    /// Up to `limit` audit entries after `since`, oldest first.
    pub(crate) async fn audit(
        &self,
        since: u64,
        limit: usize,
    ) -> Result<Vec<msakit_api::audit::AuditEntry>, ConfigStoreError> {
        let store = self.store.clone();
        Ok(blocking(move || store.audit(since, limit)).await?)
    }

    /// Receives every committed change.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Told every new change index.
    pub(crate) fn index_updates(&self) -> watch::Receiver<u64> {
        self.index.subscribe()
    }
}

fn not_found(key: &DocKey) -> ConfigStoreError {
    ConfigStoreError::NotFound(format!(
        "no document for application {}, profile {}, label {}",
        key.application, key.profile, key.label
    ))
}

fn to_wire(key: &DocKey, stored: &StoredVersion) -> DocumentVersion {
    DocumentVersion {
        application: key.application.clone(),
        profile: key.profile.clone(),
        label: key.label.clone(),
        version: stored.version,
        format: stored.format,
        content: stored.content.clone(),
        author: stored.author.clone(),
        message: stored.message.clone(),
        created_at_ms: stored.created_at_ms,
        index: stored.index,
    }
}

/// An audit entry (numbered when stored).
fn audit_entry(actor: &str, action: &str, target: String, detail: String) -> AuditRecord {
    AuditRecord {
        format_version: FormatVersion::CURRENT,
        seq: 0,
        at_ms: unix_ms(),
        actor: actor.to_owned(),
        client: None,
        action: action.to_owned(),
        target,
        detail,
    }
}
