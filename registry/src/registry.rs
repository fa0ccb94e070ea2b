//! The registry's state: namespaces → services → instances with leases, and the ordered log of
//! changes that watchers follow.
//!
//! One `RwLock` guards the structure. Heartbeats take the read lock and move the lease with an
//! atomic store, so they never wait for each other or for readers; registrations, status changes
//! and removals take the write lock, get the next index, and publish their change while still
//! holding it, so every watcher sees changes in index order and none between a snapshot and the
//! stream that follows it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use msakit_api::registry::{
    Change, DEFAULT_NAMESPACE, HealthCheck, Instance, InstanceStatus, Lease, LeaseGranted,
    RegisterInstance, RemovalReason, Scheme, ServiceInstances, ServiceList, ServiceSummary,
    Snapshot,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::config::{
    HealthChecksConfig, LeaseConfig, LimitsConfig, RegistryConfig, SelfPreservationConfig,
};
use crate::validate;

mod delta;
mod extension;

pub(crate) use delta::DeltaEntry;
pub(crate) use extension::{Extension, ExtensionData};

/// Why a registry operation was refused. Serialisable: in a cluster, the leader's refusal
/// travels back as the answer to a Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum RegistryError {
    /// No such instance (or no lease for it): the client should register again.
    #[error("instance {id} of service {service} is not registered")]
    UnknownInstance {
        /// The service.
        service: String,
        /// The instance id.
        id: String,
    },
    /// A name, id or field is invalid.
    #[error("{message}")]
    Invalid {
        /// Machine-readable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The registry holds as many instances as it is allowed to.
    #[error("the registry is full ({0} instances)")]
    Full(usize),
}

impl<'de> Deserialize<'de> for RegistryError {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        enum Wire {
            UnknownInstance { service: String, id: String },
            Invalid { code: String, message: String },
            Full(usize),
        }
        Ok(match Wire::deserialize(deserializer)? {
            Wire::UnknownInstance { service, id } => RegistryError::UnknownInstance { service, id },
            Wire::Invalid { code, message } => RegistryError::Invalid {
                code: validate::known_code(&code),
                message,
            },
            Wire::Full(n) => RegistryError::Full(n),
        })
    }
}

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

/// Whether an eviction looks at this node's own leases once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvictionCheck {
    /// A single node: a renewal may have come in since the sweep found the lease expired, so
    /// each lease is checked again.
    RecheckLease,
    /// A cluster: the leader decided, and every node applies its decision without looking at
    /// its own leases, so that all end up the same.
    LeaderDecided,
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

/// An instance's registration, as the registry keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Registration {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) scheme: Scheme,
    pub(crate) zone: Option<String>,
    pub(crate) weight: u32,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) reported: InstanceStatus,
    pub(crate) status_override: Option<InstanceStatus>,
    pub(crate) health_check: Option<HealthCheck>,
    pub(crate) check_passing: Option<bool>,
    /// What a protocol adapter keeps with the registration beyond this model (what a Eureka
    /// client said, so Eureka clients get it back unchanged), uninterpreted.
    pub(crate) extension: Option<Extension>,
    pub(crate) ttl_ms: u64,
    pub(crate) registered_at_ms: u64,
    pub(crate) modify_index: u64,
}

impl Registration {
    /// Whether a health-check verdict about `other` holds for this registration too.
    fn probes_same_target(&self, other: &Registration) -> bool {
        self.health_check == other.health_check
            && self.host == other.host
            && self.port == other.port
            && self.scheme == other.scheme
    }

    fn status(&self) -> InstanceStatus {
        match (self.status_override, self.check_passing) {
            (Some(forced), _) => forced,
            (None, Some(false)) => InstanceStatus::Down,
            (None, _) => self.reported,
        }
    }
}

#[derive(Debug)]
struct Entry {
    registration: Registration,
    /// Lease end, in milliseconds since the registry's origin.
    expires_at: AtomicU64,
    /// Unix milliseconds of the last renewal.
    last_renewed_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Service {
    /// Index of the last change to this service; kept after its last instance leaves, so
    /// blocking queries on it stay meaningful.
    index: u64,
    instances: BTreeMap<String, Entry>,
}

#[derive(Debug, Default)]
struct State {
    index: u64,
    namespaces: HashMap<String, HashMap<String, Service>>,
    history: VecDeque<Arc<ChangeRecord>>,
    /// When the history was last emptied by a snapshot install (Unix ms; 0 if never): no change
    /// before it is in the history, whatever its length.
    history_floor_ms: u64,
    instances: usize,
}

/// Counters since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Registrations and re-registrations.
    pub registrations: AtomicU64,
    /// Lease renewals.
    pub renewals: AtomicU64,
    /// Renewals refused because the lease was unknown.
    pub renewals_unknown: AtomicU64,
    /// Deregistrations.
    pub deregistrations: AtomicU64,
    /// Instances removed because their lease ran out.
    pub evictions: AtomicU64,
}

/// Filters of `GET /v1/services/{service}`.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Only instances with this effective status.
    pub status: Option<InstanceStatus>,
    /// Only instances in this zone.
    pub zone: Option<String>,
}

/// The registry.
#[derive(Debug)]
pub struct Registry {
    state: RwLock<State>,
    lease: LeaseConfig,
    limits: LimitsConfig,
    self_preservation: SelfPreservationConfig,
    health_checks: HealthChecksConfig,
    history_len: usize,
    origin: Instant,
    changes: broadcast::Sender<RegistryEvent>,
    index: watch::Sender<u64>,
    persist: Option<mpsc::UnboundedSender<PersistOp>>,
    /// Whether eviction is paused, and since when (ms since origin).
    preserving: AtomicBool,
    preserving_since: AtomicU64,
    /// When recent evictions happened (ms since origin), within the self-preservation window.
    recent_evictions: Mutex<VecDeque<u64>>,
    counters: Counters,
}

/// Unix time in milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An instance's namespace, service and id.
pub(crate) type InstanceKey = (String, String, String);

/// The registry as a cluster snapshot holds it: every instance, every service's index, and the
/// registry index.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Dumped {
    pub(crate) instances: Vec<StoredInstance>,
    /// (namespace, service, index of its last change), for services left empty too.
    pub(crate) services: Vec<(String, String, u64)>,
    pub(crate) index: u64,
}

fn key(namespace: &str, service: &str, id: &str) -> String {
    format!("{namespace}/{service}/{id}")
}

impl Registry {
    /// An empty registry. `persist`, when given, is told about every change to store.
    pub(crate) fn new(
        config: &RegistryConfig,
        persist: Option<mpsc::UnboundedSender<PersistOp>>,
    ) -> Self {
        Self {
            state: RwLock::new(State::default()),
            lease: config.lease.clone(),
            limits: config.limits.clone(),
            self_preservation: config.self_preservation.clone(),
            health_checks: config.health_checks.clone(),
            history_len: config.watch.history,
            origin: Instant::now(),
            changes: broadcast::channel(4096).0,
            index: watch::channel(0).0,
            persist,
            preserving: AtomicBool::new(false),
            preserving_since: AtomicU64::new(0),
            recent_evictions: Mutex::new(VecDeque::new()),
            counters: Counters::default(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.origin)
            .as_millis() as u64
    }

    /// The lease, in milliseconds, a registration asking for `asked_ms` gets.
    pub(crate) fn ttl_ms_for(&self, asked_ms: Option<u64>) -> u64 {
        self.ttl_for(asked_ms).as_millis() as u64
    }

    fn ttl_for(&self, asked_ms: Option<u64>) -> Duration {
        asked_ms
            .map_or(self.lease.default_ttl, Duration::from_millis)
            .clamp(self.lease.min_ttl, self.lease.max_ttl)
    }

    /// Counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether eviction is paused by self-preservation.
    pub fn is_self_preserving(&self) -> bool {
        self.preserving.load(Ordering::Relaxed)
    }

    /// The current registry index.
    pub fn index(&self) -> u64 {
        self.read().index
    }

    /// Instances registered, in all namespaces.
    pub fn instance_count(&self) -> usize {
        self.read().instances
    }

    /// Instances by effective status, in all namespaces.
    pub fn count_by_status(&self) -> BTreeMap<InstanceStatus, u64> {
        let state = self.read();
        let mut counts = BTreeMap::new();
        for services in state.namespaces.values() {
            for service in services.values() {
                for entry in service.instances.values() {
                    *counts.entry(entry.registration.status()).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    /// Whether a registration would be accepted, as far as it can be told without the state.
    pub(crate) fn check_registration(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        request: &RegisterInstance,
    ) -> Result<(), RegistryError> {
        validate::name(validate::NameKind::Namespace, namespace)?;
        validate::name(validate::NameKind::Service, service)?;
        validate::name(validate::NameKind::InstanceId, id)?;
        validate::registration(request, &self.limits)?;
        if let Some(check) = &request.health_check {
            validate::health_check(check, &self.health_checks)?;
        }
        Ok(())
    }

    /// Registers an instance, or updates its registration; renews its lease either way.
    pub fn register(
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
            metadata: request.metadata,
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
    pub fn renew(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<LeaseGranted, RegistryError> {
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
        Ok(LeaseGranted {
            instance: to_wire(namespace, service, id, entry),
            lease: lease(Duration::from_millis(ttl_ms)),
        })
    }

    /// Removes an instance.
    pub fn deregister(
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
    pub fn set_override(
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
    pub fn set_check_passing(
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

    /// Applies `change` to an instance's registration; commits it as a change when `change` says
    /// something changed.
    fn update(
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
            let mut merged = r.metadata.clone();
            merged.extend(entries);
            let bytes: usize = merged.iter().map(|(k, v)| k.len() + v.len()).sum();
            if merged.len() > limits.max_metadata_entries || bytes > limits.max_metadata_bytes {
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

    /// The names of the services of `namespace`, sorted.
    pub(crate) fn service_names(&self, namespace: &str) -> Vec<String> {
        let state = self.read();
        let mut names: Vec<String> = state
            .namespaces
            .get(namespace)
            .map(|services| services.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// What a protocol adapter kept with an instance's registration, if anything.
    pub(crate) fn extension(&self, namespace: &str, service: &str, id: &str) -> Option<Extension> {
        let state = self.read();
        let entry = state
            .namespaces
            .get(namespace)?
            .get(service)?
            .instances
            .get(id)?;
        entry.registration.extension.clone()
    }

    /// One service's instances, each with what a protocol adapter kept with it.
    pub(crate) fn service_with_extensions(
        &self,
        namespace: &str,
        service: &str,
    ) -> Vec<(Instance, Option<Extension>)> {
        let state = self.read();
        state
            .namespaces
            .get(namespace)
            .and_then(|services| services.get(service))
            .map(|s| {
                s.instances
                    .iter()
                    .map(|(id, entry)| {
                        (
                            to_wire(namespace, service, id, entry),
                            entry.registration.extension.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every instance of a namespace, each with what a protocol adapter kept with it, by
    /// service then id.
    pub(crate) fn namespace_with_extensions(
        &self,
        namespace: &str,
    ) -> Vec<(Instance, Option<Extension>)> {
        let state = self.read();
        let mut out = Vec::new();
        if let Some(services) = state.namespaces.get(namespace) {
            let mut names: Vec<&String> = services.keys().collect();
            names.sort();
            for name in names {
                for (id, entry) in &services[name].instances {
                    out.push((
                        to_wire(namespace, name, id, entry),
                        entry.registration.extension.clone(),
                    ));
                }
            }
        }
        out
    }

    /// Every instance that has a health check, and the stream of every change after that, taken
    /// together.
    pub(crate) fn checks_and_subscribe(
        &self,
    ) -> (Vec<Instance>, broadcast::Receiver<RegistryEvent>) {
        let state = self.read();
        let receiver = self.changes.subscribe();
        let mut checked = Vec::new();
        for (namespace, services) in &state.namespaces {
            for (service, s) in services {
                for (id, entry) in &s.instances {
                    if entry.registration.health_check.is_some() {
                        checked.push(to_wire(namespace, service, id, entry));
                    }
                }
            }
        }
        (checked, receiver)
    }

    /// Services of a namespace with their instance counts.
    pub fn services(&self, namespace: &str) -> ServiceList {
        let state = self.read();
        let services = state
            .namespaces
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, s)| !s.instances.is_empty())
            .map(|(name, service)| {
                let mut by_status = BTreeMap::new();
                for entry in service.instances.values() {
                    *by_status.entry(entry.registration.status()).or_insert(0) += 1;
                }
                ServiceSummary {
                    name: name.clone(),
                    instances: service.instances.len() as u64,
                    by_status,
                    index: service.index,
                }
            });
        let mut services: Vec<_> = services.collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        ServiceList {
            namespace: namespace.to_owned(),
            index: state.index,
            services,
        }
    }

    /// One service's instances, filtered. An unknown service is empty, with the registry's
    /// current index (so a blocking query on it waits for its first instance).
    pub fn service(
        &self,
        namespace: &str,
        service: &str,
        filter: &InstanceFilter,
    ) -> ServiceInstances {
        let state = self.read();
        self.service_locked(&state, namespace, service, filter)
    }

    fn service_locked(
        &self,
        state: &State,
        namespace: &str,
        service: &str,
        filter: &InstanceFilter,
    ) -> ServiceInstances {
        let found = state.namespaces.get(namespace).and_then(|s| s.get(service));
        let instances = found
            .into_iter()
            .flat_map(|s| s.instances.iter())
            .filter(|(_, e)| filter.status.is_none_or(|st| e.registration.status() == st))
            .filter(|(_, e)| {
                filter
                    .zone
                    .as_deref()
                    .is_none_or(|z| e.registration.zone.as_deref() == Some(z))
            })
            .map(|(id, e)| to_wire(namespace, service, id, e))
            .collect();
        ServiceInstances {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            index: found.map_or(state.index, |s| s.index),
            instances,
        }
    }

    /// The index of a service's last change (the registry index for an unknown service).
    pub fn service_index(&self, namespace: &str, service: &str) -> u64 {
        let state = self.read();
        let index = state
            .namespaces
            .get(namespace)
            .and_then(|s| s.get(service))
            .map(|s| s.index);
        index.unwrap_or(0)
    }

    /// A receiver that is told every new registry index.
    pub fn index_updates(&self) -> watch::Receiver<u64> {
        self.index.subscribe()
    }

    /// A snapshot of the services `wanted` accepts, and the stream of every change after it,
    /// taken together so that nothing falls between them.
    pub fn snapshot_and_subscribe(
        &self,
        namespace: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> (Snapshot, broadcast::Receiver<RegistryEvent>) {
        let state = self.read();
        let receiver = self.changes.subscribe();
        let mut names: Vec<&String> = state
            .namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|s| s.iter())
            .filter(|(name, s)| wanted(name) && !s.instances.is_empty())
            .map(|(name, _)| name)
            .collect();
        names.sort();
        let services = names
            .into_iter()
            .map(|name| self.service_locked(&state, namespace, name, &InstanceFilter::default()))
            .collect();
        (
            Snapshot {
                index: state.index,
                services,
            },
            receiver,
        )
    }

    /// The changes after `index` still in the history, and the stream of every change after
    /// them; `None` when the history no longer reaches back that far.
    pub fn changes_since(&self, index: u64) -> Option<MissedChanges> {
        let state = self.read();
        let oldest = state.history.front().map_or(state.index + 1, |c| c.index);
        if index > state.index || index + 1 < oldest {
            return None;
        }
        let receiver = self.changes.subscribe();
        let missed = state
            .history
            .iter()
            .filter(|c| c.index > index)
            .cloned()
            .collect();
        Some((missed, receiver))
    }

    /// Removes every instance whose lease has run out, unless self-preservation holds eviction
    /// back. Returns how many were removed.
    pub fn sweep(&self) -> usize {
        let due = self.due_for_eviction();
        self.evict(due, EvictionCheck::RecheckLease)
    }

    /// The instances whose lease has run out, with the index of their registration as it was,
    /// unless self-preservation holds eviction back.
    pub(crate) fn due_for_eviction(&self) -> Vec<(InstanceKey, u64)> {
        let now = self.now_ms();
        let (expired, total) = {
            let state = self.read();
            let mut expired = Vec::new();
            for (namespace, services) in &state.namespaces {
                for (service, s) in services {
                    for (id, entry) in &s.instances {
                        if entry.expires_at.load(Ordering::Acquire) <= now {
                            let key = (namespace.clone(), service.clone(), id.clone());
                            expired.push((key, entry.registration.modify_index));
                        }
                    }
                }
            }
            (expired, state.instances)
        };
        if expired.is_empty() || self.holds_eviction(expired.len(), total, now) {
            return Vec::new();
        }
        expired
    }

    /// Removes `keys` as expired, each only while its registration is the one found expired
    /// (same index: a re-registration since then saves it) — and, as `check` says, only while
    /// still expired here. Returns how many were removed.
    pub(crate) fn evict(&self, keys: Vec<(InstanceKey, u64)>, check: EvictionCheck) -> usize {
        if keys.is_empty() {
            return 0;
        }
        let now = self.now_ms();
        let mut state = self.write();
        let mut removed = 0;
        for ((namespace, service, id), modify_index) in keys {
            let still_expired = state
                .namespaces
                .get(&namespace)
                .and_then(|s| s.get(&service))
                .and_then(|s| s.instances.get(&id))
                .is_some_and(|e| {
                    e.registration.modify_index == modify_index
                        && (check == EvictionCheck::LeaderDecided
                            || e.expires_at.load(Ordering::Acquire) <= now)
                });
            if still_expired
                && self.remove(
                    &mut state,
                    &namespace,
                    &service,
                    &id,
                    RemovalReason::Expired,
                )
            {
                removed += 1;
                tracing::info!(%namespace, %service, %id, "lease expired; instance evicted");
            }
        }
        self.counters
            .evictions
            .fetch_add(removed as u64, Ordering::Relaxed);
        let mut recent = self
            .recent_evictions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recent.extend(std::iter::repeat_n(now, removed));
        removed
    }

    /// Gives every instance one full lease from now (a new cluster leader, which has not seen
    /// the renewals its predecessor saw, must not evict live instances).
    pub(crate) fn grant_grace(&self) {
        let now = self.now_ms();
        let state = self.read();
        for services in state.namespaces.values() {
            for service in services.values() {
                for entry in service.instances.values() {
                    entry
                        .expires_at
                        .store(now + entry.registration.ttl_ms, Ordering::Release);
                }
            }
        }
        self.recent_evictions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

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

    /// Self-preservation: whether this sweep must not evict. Lost leases are those expired now
    /// plus those evicted within the window; too large a share of all instances is abnormal.
    fn holds_eviction(&self, expired: usize, total: usize, now_ms: u64) -> bool {
        let config = &self.self_preservation;
        let evicted = {
            let mut recent = self
                .recent_evictions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let horizon = now_ms.saturating_sub(config.window.as_millis() as u64);
            while recent.front().is_some_and(|&at| at < horizon) {
                recent.pop_front();
            }
            recent.len()
        };
        let population = total + evicted;
        let abnormal = config.enabled
            && population >= config.min_instances
            && expired > 0
            && (expired + evicted) as f64 > config.expiring_share * population as f64;
        let preserving = self.preserving.load(Ordering::Relaxed);
        if abnormal && !preserving {
            self.preserving.store(true, Ordering::Relaxed);
            self.preserving_since.store(now_ms, Ordering::Relaxed);
            tracing::warn!(
                expired,
                total,
                "self-preservation: an abnormal share of leases ran out at once; eviction paused"
            );
            return true;
        }
        if abnormal && preserving {
            let since = self.preserving_since.load(Ordering::Relaxed);
            if now_ms.saturating_sub(since) < config.max_pause.as_millis() as u64 {
                return true;
            }
            tracing::warn!(
                expired,
                total,
                "self-preservation: max pause reached; evicting"
            );
        } else if preserving {
            tracing::info!(expired, total, "self-preservation over: renewals recovered");
        }
        self.preserving.store(false, Ordering::Relaxed);
        false
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

    fn restore_locked(&self, state: &mut State, stored: Vec<StoredInstance>, index: u64, now: u64) {
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

    fn remove(
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

    fn commit_upsert(&self, state: &mut State, namespace: &str, service: &str, id: &str) {
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

    /// Takes the next index for `change`, records it in the history and tells every watcher.
    /// Called with the write lock held, which orders changes.
    fn commit(
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

    fn instance_of(
        &self,
        state: &State,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Option<Instance> {
        let entry = state
            .namespaces
            .get(namespace)?
            .get(service)?
            .instances
            .get(id)?;
        Some(to_wire(namespace, service, id, entry))
    }
}

fn unknown(service: &str, id: &str) -> RegistryError {
    RegistryError::UnknownInstance {
        service: service.to_owned(),
        id: id.to_owned(),
    }
}

fn lease(ttl: Duration) -> Lease {
    let ttl_ms = ttl.as_millis() as u64;
    Lease {
        ttl_ms,
        renew_interval_ms: (ttl_ms / 3).max(1),
    }
}

fn to_wire(namespace: &str, service: &str, id: &str, entry: &Entry) -> Instance {
    let r = &entry.registration;
    Instance {
        id: id.to_owned(),
        service: service.to_owned(),
        namespace: namespace.to_owned(),
        host: r.host.clone(),
        port: r.port,
        scheme: r.scheme,
        zone: r.zone.clone(),
        weight: r.weight,
        metadata: r.metadata.clone(),
        status: r.status(),
        reported_status: r.reported,
        check_passing: r.check_passing,
        health_check: r.health_check.clone(),
        status_override: r.status_override,
        lease_ttl_ms: r.ttl_ms,
        registered_at_ms: r.registered_at_ms,
        last_renewed_at_ms: entry.last_renewed_ms.load(Ordering::Relaxed),
        modify_index: r.modify_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn registry() -> Registry {
        let config = RegistryConfig {
            lease: LeaseConfig {
                default_ttl: Duration::from_secs(15),
                min_ttl: Duration::from_secs(1),
                max_ttl: Duration::from_secs(60),
            },
            self_preservation: SelfPreservationConfig {
                min_instances: 4,
                expiring_share: 0.5,
                ..Default::default()
            },
            ..Default::default()
        };
        Registry::new(&config, None)
    }

    pub(super) fn request(port: u16) -> RegisterInstance {
        serde_json::from_value(serde_json::json!({"host": "127.0.0.1", "port": port})).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn leases_expire_exactly_and_renewals_keep_them() {
        let r = registry();
        r.register("public", "a", "1", request(1)).unwrap();
        r.register("public", "a", "2", request(2)).unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        r.renew("public", "a", "1").unwrap();
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_eq!(r.sweep(), 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(r.sweep(), 1, "instance 2's 15 s lease ran out");
        assert_eq!(
            r.service("public", "a", &InstanceFilter::default())
                .instances
                .len(),
            1
        );
        assert!(matches!(
            r.renew("public", "a", "2"),
            Err(RegistryError::UnknownInstance { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_is_clamped_to_the_bounds() {
        let r = registry();
        let mut req = request(1);
        req.lease_ttl_ms = Some(10);
        assert_eq!(
            r.register("public", "a", "1", req.clone())
                .unwrap()
                .lease
                .ttl_ms,
            1000
        );
        req.lease_ttl_ms = Some(3_600_000);
        assert_eq!(
            r.register("public", "a", "1", req).unwrap().lease.ttl_ms,
            60_000
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unchanged_reregistration_is_not_a_change() {
        let r = registry();
        r.register("public", "a", "1", request(1)).unwrap();
        let index = r.index();
        r.register("public", "a", "1", request(1)).unwrap();
        assert_eq!(r.index(), index);
        r.register("public", "a", "1", request(2)).unwrap();
        assert_eq!(r.index(), index + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_override_wins_and_survives_reregistration() {
        let r = registry();
        r.register("public", "a", "1", request(1)).unwrap();
        let i = r
            .set_override("public", "a", "1", Some(InstanceStatus::OutOfService))
            .unwrap();
        assert_eq!(i.status, InstanceStatus::OutOfService);
        let granted = r.register("public", "a", "1", request(1)).unwrap();
        assert_eq!(granted.instance.status, InstanceStatus::OutOfService);
        assert_eq!(granted.instance.reported_status, InstanceStatus::Up);
        let i = r.set_override("public", "a", "1", None).unwrap();
        assert_eq!(i.status, InstanceStatus::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn self_preservation_pauses_mass_eviction_and_resumes() {
        let r = registry();
        for i in 0..8 {
            r.register("public", "a", &i.to_string(), request(1000 + i))
                .unwrap();
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        for i in 0..3 {
            r.renew("public", "a", &i.to_string()).unwrap();
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        // 5 of 8 expired at once (> 50%): a network problem, not deaths.
        assert_eq!(r.sweep(), 0);
        assert!(r.is_self_preserving());
        // Renewals recover for most; one really died.
        for i in 0..7 {
            r.renew("public", "a", &i.to_string()).unwrap();
        }
        assert_eq!(r.sweep(), 1);
        assert!(!r.is_self_preserving());
    }

    #[tokio::test(start_paused = true)]
    async fn a_verdict_about_an_old_address_is_dropped() {
        let r = registry();
        let mut req = request(1);
        req.health_check =
            Some(serde_json::from_value(serde_json::json!({"type": "tcp"})).unwrap());
        let probed = r
            .register("public", "a", "1", req.clone())
            .unwrap()
            .instance;
        let i = r.set_check_passing(&probed, false).unwrap();
        assert_eq!(i.status, InstanceStatus::Down);
        // The instance moves: the old verdict no longer applies, and a late one is dropped.
        req.port = 2;
        let moved = r.register("public", "a", "1", req).unwrap().instance;
        assert_eq!(
            (moved.status, moved.check_passing),
            (InstanceStatus::Up, None)
        );
        let i = r.set_check_passing(&probed, false).unwrap();
        assert_eq!(i.status, InstanceStatus::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replaced_state_is_dumped_back_the_same_and_ends_streams() {
        let registry = registry();
        registry.register("public", "a", "1", request(1)).unwrap();
        registry.register("public", "b", "2", request(2)).unwrap();
        registry.deregister("public", "b", "2").unwrap();
        registry.register("public", "b", "2", request(2)).unwrap();
        registry.register("public", "c", "3", request(3)).unwrap();
        registry.deregister("public", "c", "3").unwrap();
        let dumped = registry.dump();
        let index = dumped.index;
        let copy = super::tests::registry();
        let (_, mut stream) = copy.snapshot_and_subscribe("public", |_| true);
        copy.replace(dumped);
        assert_eq!(copy.index(), index);
        assert_eq!(copy.instance_count(), 2);
        let b = copy.service("public", "b", &InstanceFilter::default());
        assert_eq!(b.instances[0].port, 2);
        // Every service's index too, an emptied one's included.
        for service in ["a", "b", "c"] {
            assert_eq!(
                copy.service_index("public", service),
                registry.service_index("public", service),
                "{service}"
            );
        }
        assert!(matches!(
            stream.recv().await.unwrap(),
            RegistryEvent::Replaced
        ));
        // Nothing to resume from: watchers start over from a snapshot.
        assert!(copy.changes_since(index - 1).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_eviction_spares_a_registration_that_changed_since_the_decision() {
        let registry = registry();
        let first = registry.register("public", "a", "1", request(1)).unwrap();
        let key = ("public".to_owned(), "a".to_owned(), "1".to_owned());
        let decided = first.instance.modify_index;
        // Registered again with other data after the decision: a new index, spared.
        registry.register("public", "a", "1", request(2)).unwrap();
        assert_eq!(
            registry.evict(vec![(key.clone(), decided)], EvictionCheck::LeaderDecided),
            0
        );
        assert_eq!(registry.instance_count(), 1);
        // The registration as decided on is evicted, lease or not (a cluster applies the
        // leader's decision as it is).
        let now = registry
            .service("public", "a", &InstanceFilter::default())
            .instances[0]
            .modify_index;
        assert_eq!(
            registry.evict(vec![(key, now)], EvictionCheck::LeaderDecided),
            1
        );
        assert_eq!(registry.instance_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn namespaces_do_not_see_each_other() {
        let r = registry();
        r.register("dev", "a", "1", request(1)).unwrap();
        assert!(
            r.service("prod", "a", &InstanceFilter::default())
                .instances
                .is_empty()
        );
        assert_eq!(r.services("dev").services.len(), 1);
        assert!(r.services("prod").services.is_empty());
    }
}
