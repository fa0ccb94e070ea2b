//! The config service: validated, versioned writes with compare-and-set; reads of documents and
//! history; the resolved view of (application, profiles, label) in Spring's precedence; and the
//! stream of changes that watchers follow.
//!
//! Writes are serialised by one async mutex (the compare-and-set check and the durable commit
//! happen under it); reads use the in-memory heads under a read lock and never touch the disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use msakit_api::config::{DocumentVersion, Format, HistoryEntry, Resolved, Source, WriteResult};
use serde_json::Value;
use tokio::sync::{Mutex, broadcast, oneshot, watch};

use crate::document::{self, DEFAULT_PROFILE, DocKey, DocumentError, SHARED};
use crate::format::{AuditRecord, FormatVersion, StoredVersion};
pub(crate) use crate::format::{Command, Proposed};
use crate::secrets::{Cipher, PREFIX};
use crate::store::{Store, StoreError, blocking};

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    /// A name or the document is invalid.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The document is larger than allowed.
    #[error("the document has {0} bytes, more than the {1} allowed")]
    TooLarge(usize, usize),
    /// The application's JSON Schema refuses the document.
    #[error("{0}")]
    Schema(String),
    /// A `{cipher}` value cannot be decrypted (or no key is configured).
    #[error("{0}")]
    Secret(String),
    /// The schema itself is not a valid JSON Schema.
    #[error("{0}")]
    InvalidSchema(String),
    /// No such document or version.
    #[error("{0}")]
    NotFound(String),
    /// `If-Match` named a version that is no longer the newest.
    #[error("the document is at version {current}, not {expected}")]
    Conflict {
        /// The version the writer expected.
        expected: u64,
        /// The newest version.
        current: u64,
    },
    /// Creating the document would give its application more documents than allowed.
    #[error("application {application} already has {max} documents, the most allowed")]
    TooManyDocuments {
        /// The application.
        application: String,
        /// The limit.
        max: usize,
    },
    /// Storage failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// In cluster mode: the write could not be committed by a quorum (or this node cannot tell).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Why a proposed version was not committed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum Refused {
    /// `If-Match` named a version that is no longer the newest.
    Conflict {
        /// Expected.
        expected: u64,
        /// Newest.
        current: u64,
    },
    /// The application has as many documents as allowed.
    TooManyDocuments {
        /// The application.
        application: String,
        /// The limit.
        max: usize,
    },
}

impl From<Refused> for ServiceError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Conflict { expected, current } => ServiceError::Conflict { expected, current },
            Refused::TooManyDocuments { application, max } => {
                ServiceError::TooManyDocuments { application, max }
            }
        }
    }
}

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

/// One document of a view: where it came from, and its flattened properties.
pub(crate) type SourceView = (Source, BTreeMap<String, Value>);

/// A change, as sent to watchers.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) key: DocKey,
    /// When it was committed, for the push-latency histogram.
    pub(crate) committed: std::time::Instant,
}

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

/// Where a writer's outcome goes.
type Reply = oneshot::Sender<Result<WriteResult, ServiceError>>;

/// A document version waiting for the next group commit, and where its outcome goes.
struct Pending {
    proposed: Proposed,
    reply: Reply,
}

/// The config service.
pub(crate) struct ConfigService {
    store: Store,
    state: Arc<RwLock<State>>,
    /// Held by the writer committing a batch (and by schema writes).
    writes: Arc<Mutex<()>>,
    /// Versions waiting for the next group commit.
    queue: Arc<std::sync::Mutex<Vec<Pending>>>,
    changes: broadcast::Sender<Arc<Change>>,
    index: Arc<watch::Sender<u64>>,
    cipher: Option<Cipher>,
    max_bytes: usize,
    /// Documents per application, at most.
    max_documents: usize,
    rejections: Arc<msakit_server_kit::Rejections>,
    /// In cluster mode, where every change goes through Raft.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl std::fmt::Debug for ConfigService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigService").finish_non_exhaustive()
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

impl ConfigService {
    /// The service over `store`, with everything it holds loaded.
    pub(crate) fn open(
        store: Store,
        cipher: Option<Cipher>,
        max_bytes: usize,
        max_documents: usize,
        rejections: Arc<msakit_server_kit::Rejections>,
    ) -> Result<Self, StoreError> {
        let state = State::load(&store)?;
        let index = state.index;
        Ok(Self {
            store,
            state: Arc::new(RwLock::new(state)),
            writes: Arc::new(Mutex::new(())),
            queue: Arc::new(std::sync::Mutex::new(Vec::new())),
            changes: broadcast::channel(4096).0,
            index: Arc::new(watch::channel(index).0),
            cipher,
            max_bytes,
            max_documents,
            rejections,
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// What applies commands to this service's state (a Raft state machine holds one).
    pub(crate) fn committer(&self) -> Committer {
        Committer {
            max_documents: self.max_documents,
            rejections: Arc::clone(&self.rejections),
            store: self.store.clone(),
            state: Arc::clone(&self.state),
            changes: self.changes.clone(),
            index: Arc::clone(&self.index),
        }
    }

    /// From now on every change goes through `cluster`.
    pub(crate) fn attach_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster, in cluster mode.
    pub(crate) fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    /// Applies `command`: here (single node), or through the cluster's log.
    async fn execute(&self, command: Command) -> Result<Applied, ServiceError> {
        execute(self.committer(), self.cluster.get().cloned(), command).await
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

    /// Writes a new version of a document.
    pub(crate) async fn write(
        &self,
        key: DocKey,
        format: Format,
        content: String,
        author: &str,
        message: &str,
        if_match: Option<u64>,
    ) -> Result<WriteResult, ServiceError> {
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
    ) -> Result<WriteResult, ServiceError> {
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
    ) -> Result<WriteResult, ServiceError> {
        let store = self.store.clone();
        let doc = key.storage_key();
        let old = blocking(move || store.version(&doc, version))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("version {version} does not exist")))?;
        if old.deleted {
            return Err(ServiceError::NotFound(format!(
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

    /// Size, syntax, secrets and schema.
    fn check(&self, key: &DocKey, format: Format, content: &str) -> Result<(), ServiceError> {
        if content.len() > self.max_bytes {
            return Err(ServiceError::TooLarge(content.len(), self.max_bytes));
        }
        let tree = document::parse_written(format, content)?;
        let flat = document::flatten(&tree);
        for (name, value) in &flat {
            if let Some(sealed) = value.as_str().and_then(|v| v.strip_prefix(PREFIX)) {
                let cipher = self.cipher.as_ref().ok_or_else(|| {
                    ServiceError::Secret(format!(
                        "{name} is a {{cipher}} value but this server has no secrets key"
                    ))
                })?;
                cipher.decrypt(sealed).map_err(|_| {
                    ServiceError::Secret(format!(
                        "{name} is not a value this server encrypted; use POST /encrypt and write {{cipher}}<its output>"
                    ))
                })?;
            }
        }
        let validator = self.read().schemas.get(&key.application).cloned();
        if let Some(validator) = validator {
            if let Some(error) = validator.iter_errors(&tree).next() {
                return Err(ServiceError::Schema(format!(
                    "schema violation at {}: {}",
                    if error.instance_path().as_str().is_empty() {
                        "/"
                    } else {
                        error.instance_path().as_str()
                    },
                    error
                )));
            }
        }
        Ok(())
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
    ) -> Result<WriteResult, ServiceError> {
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
        let serial = Arc::clone(&self.writes).lock_owned().await;
        if let Ok(done) = outcome.try_recv() {
            return done;
        }
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let (committer, cluster) = (self.committer(), self.cluster.get().cloned());
        // In a task of its own, so a caller that goes away cannot stop a batch half-way: the
        // lock is released only once every outcome is known.
        let _ = tokio::spawn(async move {
            let _serial = serial;
            let (proposals, replies): (Vec<Proposed>, Vec<Reply>) =
                batch.into_iter().map(|p| (p.proposed, p.reply)).unzip();
            match execute(committer, cluster, Command::Versions(proposals)).await {
                Ok(Applied::Versions(outcomes)) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome.map_err(ServiceError::from));
                    }
                }
                Ok(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(ServiceError::Store(StoreError::failed(
                            "unexpected outcome of a commit",
                        ))));
                    }
                }
                Err(error) => {
                    let message = error.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(match &error {
                            ServiceError::Cluster(e) => ServiceError::Cluster(e.clone()),
                            _ => ServiceError::Store(StoreError::failed(&message)),
                        }));
                    }
                }
            }
        })
        .await;
        outcome.await.unwrap_or_else(|_| {
            Err(ServiceError::Store(StoreError::failed(
                "the commit did not complete",
            )))
        })
    }

    /// The newest version of a document.
    pub(crate) fn get(&self, key: &DocKey) -> Result<DocumentVersion, ServiceError> {
        let state = self.read();
        match state.heads.get(key) {
            Some(head) if !head.stored.deleted => Ok(to_wire(key, &head.stored)),
            _ => Err(not_found(key)),
        }
    }

    /// Every version of a document, newest first.
    pub(crate) async fn history(&self, key: &DocKey) -> Result<Vec<HistoryEntry>, ServiceError> {
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

    /// Stores a plain-text file (an nginx.conf, say) for (application, profile, label).
    pub(crate) async fn put_file(
        &self,
        key: &DocKey,
        path: &str,
        content: String,
        author: &str,
    ) -> Result<(), ServiceError> {
        check_file_path(path)?;
        if content.len() > self.max_bytes {
            return Err(ServiceError::TooLarge(content.len(), self.max_bytes));
        }
        let audit = audit_entry(author, "file", format!("{key}:{path}"), String::new());
        self.execute(Command::File {
            format_version: FormatVersion::CURRENT,
            doc: key.storage_key(),
            path: path.to_owned(),
            content: Some(content),
            audit,
        })
        .await?;
        Ok(())
    }

    /// Removes a plain-text file.
    pub(crate) async fn delete_file(
        &self,
        key: &DocKey,
        path: &str,
        author: &str,
    ) -> Result<(), ServiceError> {
        check_file_path(path)?;
        let audit = audit_entry(
            author,
            "file_delete",
            format!("{key}:{path}"),
            String::new(),
        );
        let removed = self
            .execute(Command::File {
                format_version: FormatVersion::CURRENT,
                doc: key.storage_key(),
                path: path.to_owned(),
                content: None,
                audit,
            })
            .await?;
        if matches!(removed, Applied::File(true)) {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("no file {path:?}")))
        }
    }

    /// A plain-text file for (application, profile, label), falling back to the default profile
    /// and then to the shared `application`, as Spring looks resources up.
    pub(crate) async fn file(
        &self,
        key: &DocKey,
        path: &str,
    ) -> Result<Option<String>, ServiceError> {
        check_file_path(path)?;
        let candidates = [
            key.clone(),
            DocKey {
                profile: DEFAULT_PROFILE.to_owned(),
                ..key.clone()
            },
            DocKey {
                application: SHARED.to_owned(),
                profile: DEFAULT_PROFILE.to_owned(),
                ..key.clone()
            },
        ];
        for candidate in candidates {
            let (store, doc, path) = (self.store.clone(), candidate.storage_key(), path.to_owned());
            if let Some(text) = blocking(move || store.file(&doc, &path)).await? {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// Up to `limit` audit entries after `since`, oldest first.
    pub(crate) async fn audit(
        &self,
        since: u64,
        limit: usize,
    ) -> Result<Vec<msakit_api::audit::AuditEntry>, ServiceError> {
        let store = self.store.clone();
        Ok(blocking(move || store.audit(since, limit)).await?)
    }

    /// Sets an application's JSON Schema; later writes of its documents must satisfy it.
    pub(crate) async fn set_schema(
        &self,
        application: &str,
        schema: Value,
        author: &str,
    ) -> Result<(), ServiceError> {
        document::check_name("application", application)?;
        if !schema.is_object() {
            // `true` and `false` are JSON Schemas too, but no config is meant to be checked by
            // them: most likely a mistake.
            return Err(ServiceError::InvalidSchema(
                "the schema must be a JSON object".into(),
            ));
        }
        jsonschema::validator_for(&schema)
            .map_err(|e| ServiceError::InvalidSchema(format!("not a valid JSON Schema: {e}")))?;
        let _serial = self.writes.lock().await;
        let audit = audit_entry(author, "schema", application.to_owned(), String::new());
        self.execute(Command::Schema {
            format_version: FormatVersion::CURRENT,
            application: application.to_owned(),
            schema: schema.to_string(),
            audit,
        })
        .await?;
        Ok(())
    }

    /// The documents that make up (applications, profiles, label), highest precedence first, in
    /// the order Spring Boot loads them for Spring's own server: every profile's documents above
    /// the plain ones, the last profile first, and within each the applications (the last
    /// named first, as Spring's `spring.cloud.config.name: a,b` has it) above the shared
    /// `application` — app+prod, application+prod, app+dev, application+dev, app, application.
    pub(crate) fn sources(applications: &[&str], profiles: &[String], label: &str) -> Vec<DocKey> {
        let mut names: Vec<&str> = Vec::with_capacity(applications.len() + 1);
        for name in applications.iter().rev().copied().chain([SHARED]) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        profiles
            .iter()
            .rev()
            .map(String::as_str)
            .filter(|profile| *profile != DEFAULT_PROFILE)
            .chain([DEFAULT_PROFILE])
            .flat_map(|profile| {
                names.iter().map(move |app| DocKey {
                    application: (*app).to_owned(),
                    profile: profile.to_owned(),
                    label: label.to_owned(),
                })
            })
            .collect()
    }

    /// The documents of (application, profiles, label) that exist, highest precedence first,
    /// each flattened, with the change index of the view. `{cipher}` values are decrypted (every
    /// caller is an authorised reader); one that cannot be is reported as Spring does:
    /// `invalid.<key>` = `<n/a>`.
    pub(crate) fn sources_view(
        &self,
        applications: &[&str],
        profiles: &[String],
        label: &str,
    ) -> (u64, Vec<SourceView>) {
        let keys = Self::sources(applications, profiles, label);
        let state = self.read();
        let mut index = 0;
        let mut found = Vec::new();
        for key in &keys {
            let Some(head) = state.heads.get(key) else {
                continue;
            };
            index = index.max(head.stored.index);
            let Some(flat) = &head.flat else { continue };
            let source = Source {
                application: key.application.clone(),
                profile: key.profile.clone(),
                version: head.stored.version,
            };
            found.push((source, flat.clone()));
        }
        drop(state);
        for (_, flat) in &mut found {
            self.open_secrets(flat);
        }
        (index, found)
    }

    fn open_secrets(&self, flat: &mut BTreeMap<String, Value>) {
        let sealed: Vec<String> = flat
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(|s| s.starts_with(PREFIX)))
            .map(|(k, _)| k.clone())
            .collect();
        for name in sealed {
            let text = flat[&name].as_str().unwrap_or_default()[PREFIX.len()..].to_owned();
            match self.cipher.as_ref().map(|c| c.decrypt(&text)) {
                Some(Ok(plain)) => {
                    flat.insert(name, Value::String(plain));
                }
                _ => {
                    flat.remove(&name);
                    flat.insert(format!("invalid.{name}"), Value::String("<n/a>".into()));
                }
            }
        }
    }

    /// Whether any live document carries `label`: what a Spring client asking for a label that
    /// is nowhere is told with a 404, as Spring's git backend tells of a missing branch.
    pub(crate) fn has_label(&self, label: &str) -> bool {
        self.read()
            .heads
            .iter()
            .any(|(key, head)| key.label == label && !head.stored.deleted)
    }

    /// The change index of the view of (application, profiles, label), without building it:
    /// what a blocking query compares on every wake-up.
    pub(crate) fn view_index(&self, application: &str, profiles: &[String], label: &str) -> u64 {
        let keys = Self::sources(&[application], profiles, label);
        let state = self.read();
        keys.iter()
            .filter_map(|key| state.heads.get(key).map(|head| head.stored.index))
            .max()
            .unwrap_or(0)
    }

    /// The merged view of [`sources_view`](Self::sources_view).
    pub(crate) fn resolve(&self, application: &str, profiles: &[String], label: &str) -> Resolved {
        let (index, found) = self.sources_view(&[application], profiles, label);
        let mut properties = BTreeMap::new();
        for (_, flat) in found.iter().rev() {
            properties.extend(flat.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Resolved {
            application: application.to_owned(),
            profiles: profiles.to_vec(),
            label: label.to_owned(),
            index,
            properties,
            sources: found.into_iter().map(|(source, _)| source).collect(),
        }
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

/// A file path: names separated by `/`, at most 8 deep; nothing that could climb or hide.
pub(crate) fn check_file_path(path: &str) -> Result<(), ServiceError> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > 8 {
        return Err(DocumentError::InvalidName("a file path has at most 8 parts".into()).into());
    }
    for segment in segments {
        document::check_name("path", segment)?;
    }
    Ok(())
}

fn not_found(key: &DocKey) -> ServiceError {
    ServiceError::NotFound(format!(
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

/// Applies commands to the service's state: what a group commit runs on a single node, and what
/// every node's Raft state machine runs, in log order, in a cluster. Deterministic: the outcome
/// depends only on the state and the command.
#[derive(Clone)]
pub(crate) struct Committer {
    max_documents: usize,
    rejections: Arc<msakit_server_kit::Rejections>,
    store: Store,
    state: Arc<RwLock<State>>,
    changes: broadcast::Sender<Arc<Change>>,
    index: Arc<watch::Sender<u64>>,
}

/// Runs `command` on this node (no cluster) or proposes it to the cluster and waits for it to
/// be committed by a quorum and applied here.
async fn execute(
    committer: Committer,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    command: Command,
) -> Result<Applied, ServiceError> {
    match cluster {
        Some(cluster) => Ok(cluster.propose(command).await?),
        None => Ok(blocking(move || committer.apply(command, None)).await?),
    }
}

impl State {
    /// The heads, schemas and index held by `store`.
    fn load(store: &Store) -> Result<State, StoreError> {
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
    /// Applies `command`; `applied` (a serialised Raft log id, in cluster mode) is stored in the
    /// same transaction. An error means nothing was written.
    pub(crate) fn apply(
        &self,
        command: Command,
        applied: Option<&[u8]>,
    ) -> Result<Applied, StoreError> {
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
    pub(crate) fn reload(&self) -> Result<(), StoreError> {
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
    ) -> Result<Vec<Result<WriteResult, Refused>>, StoreError> {
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
