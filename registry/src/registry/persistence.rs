//! What the registry gives to storage and snapshots and takes back from them: the operations
//! for the store, the dump a snapshot is made of, and the restores from either.

use std::sync::atomic::AtomicU64;

use super::{Entry, Registration, Registry, RegistryEvent, RegistryWriter, State, unix_ms};

/// What the persistence task is told to do. Each operation carries the registry index of its
/// change, which is stored with it, so that a restarted registry never hands out an index twice.
#[derive(Debug)]
pub(crate) enum PersistOp {
    /// Store this instance under its key.
    Put(String, Box<StoredInstance>, u64),
    /// Forget this key.
    Delete(String, u64),
}

/// What is persisted of an instance: everything but the lease's progress.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredInstance {
    pub(crate) namespace: String,
    pub(crate) service: String,
    pub(crate) id: String,
    pub(crate) registration: Registration,
}

/// The registry as a cluster snapshot holds it: every instance, every service's index, and the
/// registry index.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Dumped {
    pub(crate) instances: Vec<StoredInstance>,
    /// (namespace, service, index of its last change), for services left empty too.
    pub(crate) services: Vec<(String, String, u64)>,
    pub(crate) index: u64,
}

pub(super) fn key(namespace: &str, service: &str, id: &str) -> String {
    format!("{namespace}/{service}/{id}")
}

impl Registry {
    /// Every instance as stored, every service's index (those left without instances
    /// included), and the registry index, read together.
    pub(crate) fn dump(&self) -> Dumped {
        let state = self.read();
        let mut instances = Vec::with_capacity(state.instances);
        let mut services = Vec::new();
        for (namespace, named) in &state.namespaces {
            for (service, s) in named {
                services.push((namespace.clone(), service.clone(), s.index));
                for (id, entry) in &s.instances {
                    instances.push(StoredInstance {
                        namespace: namespace.clone(),
                        service: service.clone(),
                        id: id.clone(),
                        registration: entry.registration.clone(),
                    });
                }
            }
        }
        Dumped {
            instances,
            services,
            index: state.index,
        }
    }

    pub(super) fn restore_locked(
        &self,
        state: &mut State,
        stored: Vec<StoredInstance>,
        index: u64,
        now: u64,
    ) {
        state.index = index;
        for item in stored {
            let ttl = item.registration.ttl_ms;
            state.index = state.index.max(item.registration.modify_index);
            let service = state
                .namespaces
                .entry(item.namespace)
                .or_default()
                .entry(item.service)
                .or_default();
            service.index = service.index.max(item.registration.modify_index);
            if service
                .instances
                .insert(
                    item.id,
                    Entry {
                        registration: item.registration,
                        expires_at: AtomicU64::new(now + ttl),
                        last_renewed_ms: AtomicU64::new(unix_ms()),
                    },
                )
                .is_none()
            {
                state.instances += 1;
            }
        }
    }
}

impl RegistryWriter {
    /// Replaces the whole state with `dumped` (a cluster node installing a snapshot), in one
    /// step; the history is dropped and open watch streams end, so their watchers start over
    /// from a snapshot.
    pub(crate) fn replace(&self, dumped: Dumped) {
        let now = self.now_ms();
        {
            let mut state = self.write();
            state.namespaces.clear();
            state.history.clear();
            state.history_floor_ms = unix_ms();
            state.instances = 0;
            self.restore_locked(&mut state, dumped.instances, dumped.index, now);
            for (namespace, service, index) in dumped.services {
                state
                    .namespaces
                    .entry(namespace)
                    .or_default()
                    .entry(service)
                    .or_default()
                    .index = index;
            }
            self.index.send_replace(state.index);
        }
        let _ = self.changes.send(RegistryEvent::Replaced);
    }

    /// Restores instances read back from storage; each gets one full lease to heartbeat again.
    /// `index` is the last index stored: the registry goes on from there, so no index is reused
    /// (removals take an index too, but leave no instance behind to remember it).
    pub(crate) fn restore(&self, stored: Vec<StoredInstance>, index: u64) {
        let now = self.now_ms();
        let mut state = self.write();
        if !stored.is_empty() {
            // The changes just before the restart are not in the new history: a delta that
            // reaches back before now cannot bring a client up to date.
            state.history_floor_ms = unix_ms();
        }
        self.restore_locked(&mut state, stored, index, now);
        self.index.send_replace(state.index);
    }
}
