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
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use msakit_api::registry::{
    HealthCheck, Instance, InstanceStatus, Lease, RegisterInstance, Scheme,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::config::{
    HealthChecksConfig, LeaseConfig, LimitsConfig, RegistryConfig, SelfPreservationConfig,
};
use crate::validate;

mod change;
mod delta;
mod error;
mod eviction;
mod extension;
mod metadata;
mod persistence;
mod reads;
mod writer;

pub(crate) use change::DepartedInstance;
pub use change::{ChangeRecord, MissedChanges, RegistryEvent};
pub(crate) use delta::DeltaEntry;
pub use error::RegistryError;
use error::unknown;
pub(crate) use eviction::EvictionCheck;
pub(crate) use extension::{Extension, ExtensionData};
pub(crate) use metadata::Metadata;
use persistence::key;
pub(crate) use persistence::{Dumped, PersistOp, StoredInstance};
pub(crate) use writer::RegistryWriter;

/// An instance's registration, as the registry keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Registration {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) scheme: Scheme,
    pub(crate) zone: Option<String>,
    pub(crate) weight: u32,
    pub(crate) metadata: Metadata,
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

impl Registry {
    /// An empty registry (made with its writer, [`RegistryWriter::new`]). `persist`, when
    /// given, is told about every change to store.
    fn new(config: &RegistryConfig, persist: Option<mpsc::UnboundedSender<PersistOp>>) -> Self {
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
        metadata: r.metadata.to_map(),
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

    pub(super) fn registry() -> RegistryWriter {
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
        RegistryWriter::new(&config, None)
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
