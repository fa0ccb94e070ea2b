//! [`RegistryWriter`], the one handle that changes registrations: the write path
//! ([`crate::writes`]) holds it, so no handler can change the registry except through that path
//! (and so, in a cluster, through Raft).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use msakit_api::registry::{
    Change, DEFAULT_NAMESPACE, Instance, InstanceStatus, LeaseGranted, RegisterInstance,
    RemovalReason,
};
use tokio::sync::mpsc;

use super::{
    DepartedInstance, Entry, Extension, PersistOp, Registration, Registry, RegistryError, State,
    StoredInstance, key, lease, to_wire, unix_ms, unknown,
};
use crate::config::RegistryConfig;

/// The handle that changes the registry; it reads too (it dereferences to the [`Registry`]).
/// Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct RegistryWriter(Arc<Registry>);

impl RegistryWriter {
    /// An empty registry and its writer. `persist`, when given, is told about every change to
    /// store.
    pub(crate) fn new(
        config: &RegistryConfig,
        persist: Option<mpsc::UnboundedSender<PersistOp>>,
    ) -> Self {
        Self(Arc::new(Registry::new(config, persist)))
    }

    /// The registry, to read.
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.0
    }
}

impl Deref for RegistryWriter {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.0
    }
}

impl RegistryWriter {
    #[cfg(test)]
    /// Registers an instance, or updates its registration; renews its lease either way.
    pub(crate) fn register(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        request: RegisterInstance,
    ) -> Result<LeaseGranted, RegistryError> {
        self.register_with(namespace, service, id, request, None, unix_ms())
    }

    /// [`register`](Self::register), keeping a protocol adapter's `extension` with it, at
    /// `at_ms` (Unix milliseconds; the registration time of a new instance).
    pub(crate) fn register_with(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        request: RegisterInstance,
        extension: Option<Extension>,
        at_ms: u64,
    ) -> Result<LeaseGranted, RegistryError> {
        self.check_registration(namespace, service, id, &request)?;
        let ttl = self.ttl_for(request.lease_ttl_ms);
        let now_ms = self.now_ms();
        let mut state = self.write();
        let exists = state
            .namespaces
            .get(namespace)
            .and_then(|s| s.get(service))
            .is_some_and(|s| s.instances.contains_key(id));
        if !exists && state.instances >= self.limits.max_instances {
            return Err(RegistryError::Full(self.limits.max_instances));
        }
        self.counters.registrations.fetch_add(1, Ordering::Relaxed);
        let next_index = state.index + 1;
        let entry_service = state
            .namespaces
            .entry(namespace.to_owned())
            .or_default()
            .entry(service.to_owned())
            .or_default();
        let mut registration = Registration {
            host: request.host,
            port: request.port,
            scheme: request.scheme,
            zone: request.zone,
            weight: request.weight,
            metadata: request.metadata.into(),
            reported: request.status,
            status_override: None,
            check_passing: None,
            health_check: request.health_check,
            extension,
            ttl_ms: ttl.as_millis() as u64,
            registered_at_ms: at_ms,
            modify_index: next_index,
        };
        let changed = match entry_service.instances.get_mut(id) {
            Some(entry) => {
                registration.status_override = entry.registration.status_override;
                if registration.probes_same_target(&entry.registration) {
                    registration.check_passing = entry.registration.check_passing;
                }
                registration.registered_at_ms = entry.registration.registered_at_ms;
                registration.modify_index = entry.registration.modify_index;
                let changed = registration != entry.registration;
                if changed {
                    registration.modify_index = next_index;
                    entry.registration = registration;
                }
                entry
                    .expires_at
                    .store(now_ms + ttl.as_millis() as u64, Ordering::Release);
                entry.last_renewed_ms.store(unix_ms(), Ordering::Relaxed);
                changed
            }
            None => {
                entry_service.instances.insert(
                    id.to_owned(),
                    Entry {
                        registration,
                        expires_at: AtomicU64::new(now_ms + ttl.as_millis() as u64),
                        last_renewed_ms: AtomicU64::new(unix_ms()),
                    },
                );
                true
            }
        };
        if !exists {
            state.instances += 1;
        }
        if changed {
            self.commit_upsert(&mut state, namespace, service, id);
        }
        let instance = self.instance_of(&state, namespace, service, id);
        Ok(LeaseGranted {
            instance: instance.expect("just inserted"),
            lease: lease(ttl),
        })
    }

    /// Renews an instance's lease. Unknown instances get [`RegistryError::UnknownInstance`], so
    /// the client registers again (after a restart, an eviction, …).
    pub(crate) fn renew(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<LeaseGranted, RegistryError> {
        self.renewing(namespace, service, id, |entry, ttl_ms| LeaseGranted {
            instance: to_wire(namespace, service, id, entry),
            lease: lease(Duration::from_millis(ttl_ms)),
        })
    }

    /// Renews an instance's lease, as [`renew`](Self::renew), without describing it: for callers
    /// that answer with a bare status (Eureka's heartbeat, renewals handed on by followers), so
    /// a heartbeat does not copy the whole instance only to drop it.
    pub(crate) fn renew_lease(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<(), RegistryError> {
        self.renewing(namespace, service, id, |_, _| ())
    }

    fn renewing<T>(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        granted: impl FnOnce(&Entry, u64) -> T,
    ) -> Result<T, RegistryError> {
        let state = self.read();
        let Some(entry) = state
            .namespaces
            .get(namespace)
            .and_then(|s| s.get(service))
            .and_then(|s| s.instances.get(id))
        else {
            self.counters
                .renewals_unknown
                .fetch_add(1, Ordering::Relaxed);
            return Err(unknown(service, id));
        };
        let ttl_ms = entry.registration.ttl_ms;
        entry
            .expires_at
            .store(self.now_ms() + ttl_ms, Ordering::Release);
        entry.last_renewed_ms.store(unix_ms(), Ordering::Relaxed);
        self.counters.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(granted(entry, ttl_ms))
    }

    /// Removes an instance.
    pub(crate) fn deregister(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<(), RegistryError> {
        let mut state = self.write();
        if !self.remove(
            &mut state,
            namespace,
            service,
            id,
            RemovalReason::Deregistered,
        ) {
            return Err(unknown(service, id));
        }
        self.counters
            .deregistrations
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sets or clears an operator's status override.
    pub(crate) fn set_override(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        status: Option<InstanceStatus>,
    ) -> Result<Instance, RegistryError> {
        self.update(namespace, service, id, |r| {
            std::mem::replace(&mut r.status_override, status) != status
        })
    }

    /// Records the verdict of the registry's own health check of an instance — unless the
    /// instance has meanwhile changed its check or its address (`probed` is the instance as it
    /// was when the probe started), in which case the verdict is about something else and dropped.
    pub(crate) fn set_check_passing(
        &self,
        probed: &Instance,
        passing: bool,
    ) -> Result<Instance, RegistryError> {
        self.update(&probed.namespace, &probed.service, &probed.id, |r| {
            let same = r.health_check == probed.health_check
                && r.host == probed.host
                && r.port == probed.port
                && r.scheme == probed.scheme;
            same && r.check_passing.replace(passing) != Some(passing)
        })
    }

    /// Adds or replaces metadata entries of an instance, within the metadata limits.
    pub(crate) fn merge_metadata(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        entries: BTreeMap<String, String>,
    ) -> Result<Instance, RegistryError> {
        let limits = self.limits.clone();
        let mut invalid = None;
        let result = self.update(namespace, service, id, |r| {
            let merged = r.metadata.merged(entries);
            let (count, bytes) = merged.size();
            if count > limits.max_metadata_entries || bytes > limits.max_metadata_bytes {
                invalid = Some(RegistryError::Invalid {
                    code: "metadata_too_large",
                    message: "the merged metadata exceeds the registry's limits".into(),
                });
                return false;
            }
            std::mem::replace(&mut r.metadata, merged) != r.metadata
        });
        match invalid {
            Some(e) => Err(e),
            None => result,
        }
    }
}

impl Registry {
    /// Applies `change` to an instance's registration; commits it as a change when `change` says
    /// something changed.
    pub(super) fn update(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        change: impl FnOnce(&mut Registration) -> bool,
    ) -> Result<Instance, RegistryError> {
        let mut state = self.write();
        let next_index = state.index + 1;
        let entry = state
            .namespaces
            .get_mut(namespace)
            .and_then(|s| s.get_mut(service))
            .and_then(|s| s.instances.get_mut(id))
            .ok_or_else(|| unknown(service, id))?;
        if change(&mut entry.registration) {
            entry.registration.modify_index = next_index;
            self.commit_upsert(&mut state, namespace, service, id);
        }
        Ok(self
            .instance_of(&state, namespace, service, id)
            .expect("present under the lock"))
    }

    pub(super) fn remove(
        &self,
        state: &mut State,
        namespace: &str,
        service: &str,
        id: &str,
        reason: RemovalReason,
    ) -> bool {
        let Some(s) = state
            .namespaces
            .get_mut(namespace)
            .and_then(|s| s.get_mut(service))
        else {
            return false;
        };
        let Some(entry) = s.instances.remove(id) else {
            return false;
        };
        state.instances -= 1;
        // Only the delta reads it, and the one API that asks for deltas (Eureka's) shows only
        // the default namespace.
        let departed = (namespace == DEFAULT_NAMESPACE).then(|| DepartedInstance {
            instance: to_wire(namespace, service, id, &entry),
            extension: entry.registration.extension,
        });
        let change = Change::Removed {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            id: id.to_owned(),
            reason,
        };
        self.commit(state, namespace, service, change, departed);
        if let Some(persist) = &self.persist {
            let _ = persist.send(PersistOp::Delete(key(namespace, service, id), state.index));
        }
        true
    }

    pub(super) fn commit_upsert(
        &self,
        state: &mut State,
        namespace: &str,
        service: &str,
        id: &str,
    ) {
        let instance = self
            .instance_of(state, namespace, service, id)
            .expect("present under the lock");
        if let Some(persist) = &self.persist {
            let entry = &state.namespaces[namespace][service].instances[id];
            let stored = StoredInstance {
                namespace: namespace.to_owned(),
                service: service.to_owned(),
                id: id.to_owned(),
                registration: entry.registration.clone(),
            };
            let index = state.index + 1;
            let _ = persist.send(PersistOp::Put(
                key(namespace, service, id),
                Box::new(stored),
                index,
            ));
        }
        self.commit(
            state,
            namespace,
            service,
            Change::Upserted { instance },
            None,
        );
    }
}
