//! The [`Committer`]: what applies a [`Command`] to the config state — a group commit on a single
//! node, every node's Raft state machine in log order in a cluster. Deterministic: the outcome
//! depends only on the state and the command.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use msakit_api::config::WriteResult;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::{Head, Refused, State, audit_entry, flat_of, key_of};
use crate::document::DocKey;
use crate::format::{AuditRecord, Command, Proposed, StoredVersion};
use crate::storage::{Storage, StorageError};

/// What applying a [`Command`] gave.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) enum Applied {
    /// Nothing to report (a schema; a Raft entry that is not a command).
    #[default]
    Done,
    /// Per proposed version, in order: committed, or why not.
    Versions(Vec<Result<WriteResult, Refused>>),
    /// Whether the file existed before.
    File(bool),
}

/// A change, as sent to watchers.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) key: DocKey,
    /// When it was committed, for the push-latency histogram.
    pub(crate) committed: std::time::Instant,
}

/// Applies commands to the service's state: what a group commit runs on a single node, and what
/// every node's Raft state machine runs, in log order, in a cluster. Deterministic: the outcome
/// depends only on the state and the command.
#[derive(Clone)]
pub(crate) struct Committer {
    max_documents: usize,
    rejections: Arc<msakit_server_kit::Rejections>,
    pub(super) store: Storage,
    pub(super) state: Arc<RwLock<State>>,
    pub(super) changes: broadcast::Sender<Arc<Change>>,
    pub(super) index: Arc<watch::Sender<u64>>,
}

impl State {
    /// The heads, schemas and index held by `store`.
    fn load(store: &Storage) -> Result<State, StorageError> {
        let loaded = store.load()?;
        let mut state = State {
            index: loaded.index,
            ..State::default()
        };
        for (doc, stored) in loaded.heads {
            if let Some(key) = key_of(&doc) {
                state.heads.insert(
                    key,
                    Head {
                        flat: flat_of(&stored),
                        stored,
                    },
                );
            }
        }
        for (app, schema) in loaded.schemas {
            if let Some(validator) = compile_schema(&schema) {
                state.schemas.insert(app, Arc::new(validator));
            }
        }
        Ok(state)
    }
}

fn compile_schema(text: &str) -> Option<jsonschema::Validator> {
    let schema: Value = serde_json::from_str(text).ok()?;
    jsonschema::validator_for(&schema).ok()
}

impl Committer {
    /// Over `store`, with everything it holds loaded; an application gets at most
    /// `max_documents` documents (refusals counted in `rejections`).
    pub(crate) fn open(
        store: Storage,
        max_documents: usize,
        rejections: Arc<msakit_server_kit::Rejections>,
    ) -> Result<Self, StorageError> {
        let state = State::load(&store)?;
        let index = state.index;
        Ok(Self {
            max_documents,
            rejections,
            store,
            state: Arc::new(RwLock::new(state)),
            changes: broadcast::channel(4096).0,
            index: Arc::new(watch::channel(index).0),
        })
    }

    /// Applies `command`; `applied` (a serialised Raft log id, in cluster mode) is stored in the
    /// same transaction. An error means nothing was written.
    pub(crate) fn apply(
        &self,
        command: Command,
        applied: Option<&[u8]>,
    ) -> Result<Applied, StorageError> {
        match command {
            Command::Versions(batch) => Ok(Applied::Versions(self.commit(batch, applied)?)),
            Command::Schema {
                application,
                schema,
                audit,
                ..
            } => {
                self.store
                    .put_schema(&application, &schema, &audit, applied)?;
                if let Some(validator) = compile_schema(&schema) {
                    self.state
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .schemas
                        .insert(application, Arc::new(validator));
                }
                Ok(Applied::Done)
            }
            Command::File {
                doc,
                path,
                content,
                audit,
                ..
            } => Ok(Applied::File(self.store.put_file(
                &doc,
                &path,
                content.as_deref(),
                &audit,
                applied,
            )?)),
        }
    }

    /// Reloads the state from the store (after a Raft snapshot replaced it), and tells watchers
    /// of every document that changed.
    pub(crate) fn reload(&self) -> Result<(), StorageError> {
        let fresh = State::load(&self.store)?;
        let index = fresh.index;
        let changed: Vec<DocKey> = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            let changed = fresh
                .heads
                .iter()
                .filter(|(key, head)| {
                    state
                        .heads
                        .get(*key)
                        .is_none_or(|old| old.stored.index != head.stored.index)
                })
                .map(|(key, _)| key.clone())
                .collect();
            *state = fresh;
            changed
        };
        let committed = std::time::Instant::now();
        for key in changed {
            let _ = self.changes.send(Arc::new(Change { key, committed }));
        }
        self.index.send_replace(index);
        Ok(())
    }

    /// Decides versions in batch order, writes the accepted ones in one transaction, then makes
    /// them visible; the outcome of each proposal, in order.
    fn commit(
        &self,
        batch: Vec<Proposed>,
        applied: Option<&[u8]>,
    ) -> Result<Vec<Result<WriteResult, Refused>>, StorageError> {
        let mut outcomes: Vec<Result<WriteResult, Refused>> = Vec::with_capacity(batch.len());
        let mut accepted: Vec<(DocKey, StoredVersion)> = Vec::with_capacity(batch.len());
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            let mut versions: HashMap<DocKey, u64> = HashMap::new();
            let mut created: HashMap<String, usize> = HashMap::new();
            let mut index = state.index;
            for proposed in batch {
                let live = |key: &DocKey| state.heads.get(key).is_some_and(|h| !h.stored.deleted);
                if !proposed.stored.deleted
                    && !live(&proposed.key)
                    && !versions.contains_key(&proposed.key)
                {
                    let app = &proposed.key.application;
                    let existing = state
                        .heads
                        .iter()
                        .filter(|(k, h)| &k.application == app && !h.stored.deleted)
                        .count()
                        + created.get(app).copied().unwrap_or(0);
                    if existing >= self.max_documents {
                        self.rejections.count(msakit_server_kit::Limit::Capacity);
                        outcomes.push(Err(Refused::TooManyDocuments {
                            application: app.clone(),
                            max: self.max_documents,
                        }));
                        continue;
                    }
                    *created.entry(app.clone()).or_default() += 1;
                }
                let current = versions.get(&proposed.key).copied().unwrap_or_else(|| {
                    state
                        .heads
                        .get(&proposed.key)
                        .map_or(0, |h| h.stored.version)
                });
                if let Some(expected) = proposed.if_match {
                    if expected != current {
                        outcomes.push(Err(Refused::Conflict { expected, current }));
                        continue;
                    }
                }
                index += 1;
                let stored = StoredVersion {
                    version: current + 1,
                    index,
                    ..proposed.stored
                };
                versions.insert(proposed.key.clone(), stored.version);
                outcomes.push(Ok(WriteResult {
                    version: stored.version,
                    index: stored.index,
                }));
                accepted.push((proposed.key, stored));
            }
        }
        if accepted.is_empty() {
            if applied.is_some() {
                self.store
                    .set_raft_state(&[("applied", applied.unwrap_or_default())])?;
            }
            return Ok(outcomes);
        }
        let rows: Vec<(String, &StoredVersion)> = accepted
            .iter()
            .map(|(key, stored)| (key.storage_key(), stored))
            .collect();
        let audit: Vec<AuditRecord> = accepted
            .iter()
            .map(|(key, stored)| {
                let action = if stored.deleted {
                    "delete"
                } else if stored.rolled_back_to.is_some() {
                    "rollback"
                } else {
                    "write"
                };
                AuditRecord {
                    at_ms: stored.created_at_ms,
                    ..audit_entry(
                        &stored.author,
                        action,
                        format!("{key}@{}", stored.version),
                        stored.message.clone(),
                    )
                }
            })
            .collect();
        if let Err(error) = self.store.append_batch(&rows, &audit, applied) {
            tracing::error!(%error, writes = accepted.len(), "config commit failed; nothing was written");
            return Err(error);
        }
        // Durable: now visible, in commit order.
        let committed = std::time::Instant::now();
        let mut last = 0;
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            for (key, stored) in &accepted {
                state.index = stored.index;
                last = stored.index;
                state.heads.insert(
                    key.clone(),
                    Head {
                        flat: flat_of(stored),
                        stored: stored.clone(),
                    },
                );
            }
        }
        for (key, _) in accepted {
            let _ = self.changes.send(Arc::new(Change { key, committed }));
        }
        self.index.send_replace(last);
        Ok(outcomes)
    }
}
