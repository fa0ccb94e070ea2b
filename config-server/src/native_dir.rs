//! The "native" backend: a directory laid out as Spring's native profile (`application.yml`,
//! `{app}.yml`, `{app}-{profile}.yml`, `.yaml`, `.properties`, `.json`; files at the top are label
//! `main`, a subfolder is a label) served read-only, reloaded on every file change (the `notify`
//! crate) and pushed to watchers — GitOps without a poll.
//!
//! The directory is mirrored into the store: a changed file becomes a new version authored
//! `native-dir`, a removed one a tombstone, so history, resolve and watches work unchanged. A
//! file that fails to parse keeps its last good version served and is reported in `/health` and
//! the logs. Documents mirrored from the directory refuse writes through the API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use msakit_api::config::Format;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config_store::ConfigStore;
use crate::document::{self, DEFAULT_LABEL, DEFAULT_PROFILE, DocKey, SHARED};

/// The author of versions mirrored from the directory.
const AUTHOR: &str = "native-dir";

/// A watched directory.
#[derive(Debug)]
pub(crate) struct NativeDir {
    root: PathBuf,
    /// Documents that come from the directory, and the file each comes from.
    managed: RwLock<HashMap<DocKey, String>>,
    /// Files that currently fail to parse (or are misnamed), with why.
    errors: Mutex<BTreeMap<String, String>>,
}

/// One config file found in the directory.
struct Found {
    key: DocKey,
    format: Format,
    content: String,
    file: String,
}

impl NativeDir {
    /// The directory at `root`, resolved once (`..`, symlinks), so that a path given as
    /// `repo/../config` serves the same files as `config`.
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root: std::fs::canonicalize(&root).unwrap_or(root),
            managed: RwLock::new(HashMap::new()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether `key` comes from the directory (and so may not be written through the API).
    pub(crate) fn manages(&self, key: &DocKey) -> bool {
        self.managed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }

    /// Files that fail to parse, with why.
    pub(crate) fn errors(&self) -> BTreeMap<String, String> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the directory and brings the store in line with it.
    pub(crate) async fn sync(&self, service: &ConfigStore) {
        let (found, mut errors) = scan(&self.root);
        let mut present = HashMap::new();
        for file in found {
            if let Err(e) = document::parse(file.format, &file.content) {
                tracing::warn!(file = %file.file, error = %e, "native-dir file does not parse; keeping its last good version");
                errors.insert(file.file.clone(), e.to_string());
                present.insert(file.key, file.file);
                continue;
            }
            let unchanged = service.get(&file.key).is_ok_and(|current| {
                current.content == file.content && current.format == file.format
            });
            if !unchanged {
                let message = format!("{} changed", file.file);
                match service
                    .write(
                        file.key.clone(),
                        file.format,
                        file.content,
                        AUTHOR,
                        &message,
                        None,
                    )
                    .await
                {
                    Ok(result) => {
                        tracing::info!(file = %file.file, version = result.version, "native-dir file loaded")
                    }
                    Err(e) => {
                        tracing::warn!(file = %file.file, error = %e, "native-dir file refused");
                        errors.insert(file.file.clone(), e.to_string());
                    }
                }
            }
            present.insert(file.key, file.file);
        }
        let gone: Vec<DocKey> = {
            let managed = self.managed.read().unwrap_or_else(|e| e.into_inner());
            managed
                .keys()
                .filter(|k| !present.contains_key(*k))
                .cloned()
                .collect()
        };
        for key in gone {
            if service.get(&key).is_ok() {
                let _ = service.delete(key, AUTHOR, "file removed", None).await;
            }
        }
        *self.managed.write().unwrap_or_else(|e| e.into_inner()) = present;
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()) = errors;
    }

    /// Syncs now, then after every burst of file events until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, service: Arc<ConfigStore>, stop: CancellationToken) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = events_tx.send(());
            }
        });
        let _watcher = match watcher {
            Ok(mut watcher) => {
                use notify::Watcher;
                if let Err(e) = watcher.watch(&self.root, notify::RecursiveMode::Recursive) {
                    tracing::error!(dir = %self.root.display(), error = %e, "cannot watch the native directory");
                }
                Some(watcher)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start watching files; the native directory is loaded once");
                None
            }
        };
        loop {
            tokio::select! {
                event = events.recv() => {
                    if event.is_none() {
                        return;
                    }
                    // Editors write in bursts (temp file, rename, chmod): settle first.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while events.try_recv().is_ok() {}
                    self.sync(&service).await;
                }
                _ = stop.cancelled() => return,
            }
        }
    }

    /// A plain file under the label's folder (or the top for `main`), for
    /// `GET /{application}/{profile}/{label}/{path}`. `path` is checked segment by segment and
    /// the result must stay inside the directory.
    pub(crate) fn plain_file(&self, label: &str, path: &str) -> Option<String> {
        let mut full = self.root.clone();
        if label != DEFAULT_LABEL {
            // Nested folders hold labels with '/', segment by segment.
            for segment in label.split('/') {
                document::check_name("label", segment).ok()?;
                full.push(segment);
            }
        }
        for segment in path.split('/') {
            document::check_name("path", segment).ok()?;
            full.push(segment);
        }
        let canonical = full.canonicalize().ok()?;
        let root = self.root.canonicalize().ok()?;
        if !canonical.starts_with(&root) || !canonical.is_file() {
            return None;
        }
        std::fs::read_to_string(canonical).ok()
    }
}

/// The config files of the directory, and the names it could not use.
fn scan(root: &Path) -> (Vec<Found>, BTreeMap<String, String>) {
    let mut found = Vec::new();
    let mut errors = BTreeMap::new();
    let mut folders = vec![(root.to_owned(), DEFAULT_LABEL.to_owned())];
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if let Some(label) = path.file_name().and_then(|n| n.to_str()) {
                    if document::check_name("label", label).is_ok() {
                        folders.push((path.clone(), label.to_owned()));
                    }
                }
            }
        }
    }
    let mut seen = HashSet::new();
    for (folder, label) in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Only what lies below the root is checked: the root itself may be given with `..`.
            let below = path.strip_prefix(root).unwrap_or(&path);
            if !path.is_file()
                || below
                    .components()
                    .any(|c| matches!(c, Component::ParentDir))
            {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((stem, ext)) = name.rsplit_once('.') else {
                continue;
            };
            let format = match ext {
                "yml" | "yaml" => Format::Yaml,
                "json" => Format::Json,
                "properties" => Format::Properties,
                _ => continue,
            };
            let file = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let (application, profile) = if stem == SHARED {
                (SHARED, DEFAULT_PROFILE)
            } else {
                stem.rsplit_once('-').unwrap_or((stem, DEFAULT_PROFILE))
            };
            let key = match DocKey::new(application, profile, &label) {
                Ok(key) => key,
                Err(e) => {
                    errors.insert(file, e.to_string());
                    continue;
                }
            };
            if !seen.insert(key.clone()) {
                errors.insert(
                    file,
                    "another file already provides this application, profile and label".into(),
                );
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(content) => found.push(Found {
                    key,
                    format,
                    content,
                    file,
                }),
                Err(e) => {
                    errors.insert(file, e.to_string());
                }
            }
        }
    }
    (found, errors)
}
