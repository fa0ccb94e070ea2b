//! The change log: every committed change takes the next index, enters the bounded history
//! that resuming watchers read, and is broadcast to every follower, all under the write lock, so
//! changes are heard in index order.

use std::sync::{Arc, OnceLock};

use msakit_api::registry::{Change, Instance};
use tokio::sync::broadcast;

use super::{Extension, Registry, State, unix_ms};

/// A committed change, as the change log keeps it and followers hear it.
#[derive(Debug)]
pub struct ChangeRecord {
    /// Its index.
    pub index: u64,
    /// Its namespace.
    pub namespace: String,
    /// Its service.
    pub service: String,
    /// The instance it is about.
    pub id: String,
    /// When it happened (Unix milliseconds).
    pub at_ms: u64,
    /// What changed.
    pub change: Change,
    /// For a removal, the instance as it was when it left, kept as long as the history keeps
    /// the change: Eureka's delta describes a deleted instance in full, and clients match it by
    /// what it was (host name, port), not only by id.
    pub(crate) departed: Option<Arc<DepartedInstance>>,
    /// Where the watch adapter keeps what it rendered of this change (its Server-Sent-Events
    /// frame), so that every watcher shares one rendering. The registry never reads it.
    pub(crate) rendered: OnceLock<bytes::Bytes>,
}

/// An instance as it was when it left the registry.
#[derive(Debug)]
pub(crate) struct DepartedInstance {
    /// The instance as it last was.
    pub(crate) instance: Instance,
    /// What a protocol adapter kept with its registration.
    pub(crate) extension: Option<Extension>,
}

/// What the registry tells its followers (watch streams, the health checker).
#[derive(Debug, Clone)]
pub enum RegistryEvent {
    /// A change, committed.
    Changed(Arc<ChangeRecord>),
    /// Not a change: the whole state was replaced (a cluster node installed a snapshot).
    /// Followers start over from a fresh snapshot.
    Replaced,
}

/// The changes a resuming watcher missed, and the stream of every event after them.
pub type MissedChanges = (Vec<Arc<ChangeRecord>>, broadcast::Receiver<RegistryEvent>);

impl Registry {
    /// Takes the next index for `change`, records it in the history and tells every watcher.
    /// Called with the write lock held, which orders changes.
    pub(super) fn commit(
        &self,
        state: &mut State,
        namespace: &str,
        service: &str,
        change: Change,
        departed: Option<DepartedInstance>,
    ) {
        let id = match &change {
            Change::Upserted { instance } => instance.id.clone(),
            Change::Removed { id, .. } => id.clone(),
        };
        state.index += 1;
        let index = state.index;
        if let Some(s) = state
            .namespaces
            .get_mut(namespace)
            .and_then(|s| s.get_mut(service))
        {
            s.index = index;
        }
        let record = Arc::new(ChangeRecord {
            index,
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            id,
            at_ms: unix_ms(),
            change,
            departed: departed.map(Arc::new),
            rendered: OnceLock::new(),
        });
        while state.history.len() >= self.history_len.max(1) {
            state.history.pop_front();
        }
        state.history.push_back(Arc::clone(&record));
        // No receiver is fine: nobody is watching.
        let _ = self.changes.send(RegistryEvent::Changed(record));
        self.index.send_replace(index);
    }
}
