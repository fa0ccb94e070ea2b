//! Registrations as the registry's redb file and its Raft snapshots keep them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::FormatVersion;
use super::records::{HealthCheckRecord, SchemeRecord, StatusRecord};
use crate::eureka::EurekaInfo;
use crate::registry::{Dumped, Extension, Registration, StoredInstance};

/// An instance's registration: everything but its lease's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RegistrationRecord {
    host: String,
    port: u16,
    scheme: SchemeRecord,
    zone: Option<String>,
    weight: u32,
    metadata: BTreeMap<String, String>,
    reported: StatusRecord,
    status_override: Option<StatusRecord>,
    health_check: Option<HealthCheckRecord>,
    check_passing: Option<bool>,
    /// What an instance registered through the Eureka API said beyond the native model.
    #[serde(default)]
    eureka: Option<EurekaInfo>,
    ttl_ms: u64,
    registered_at_ms: u64,
    modify_index: u64,
}

impl From<Registration> for RegistrationRecord {
    fn from(r: Registration) -> Self {
        Self {
            host: r.host,
            port: r.port,
            scheme: r.scheme.into(),
            zone: r.zone,
            weight: r.weight,
            metadata: r.metadata.into(),
            reported: r.reported.into(),
            status_override: r.status_override.map(Into::into),
            health_check: r.health_check.map(Into::into),
            check_passing: r.check_passing,
            eureka: r
                .extension
                .as_ref()
                .and_then(|e| e.get::<EurekaInfo>())
                .cloned(),
            ttl_ms: r.ttl_ms,
            registered_at_ms: r.registered_at_ms,
            modify_index: r.modify_index,
        }
    }
}

impl From<RegistrationRecord> for Registration {
    fn from(r: RegistrationRecord) -> Self {
        Self {
            host: r.host,
            port: r.port,
            scheme: r.scheme.into(),
            zone: r.zone,
            weight: r.weight,
            metadata: r.metadata.into(),
            reported: r.reported.into(),
            status_override: r.status_override.map(Into::into),
            health_check: r.health_check.map(Into::into),
            check_passing: r.check_passing,
            extension: r.eureka.map(Extension::new),
            ttl_ms: r.ttl_ms,
            registered_at_ms: r.registered_at_ms,
            modify_index: r.modify_index,
        }
    }
}

/// One instance as the redb file stores it (one record per instance) and as a snapshot lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredInstanceRecord {
    #[serde(default)]
    format_version: FormatVersion,
    namespace: String,
    service: String,
    id: String,
    registration: RegistrationRecord,
}

impl From<StoredInstance> for StoredInstanceRecord {
    fn from(stored: StoredInstance) -> Self {
        Self {
            format_version: FormatVersion::CURRENT,
            namespace: stored.namespace,
            service: stored.service,
            id: stored.id,
            registration: stored.registration.into(),
        }
    }
}

impl From<StoredInstanceRecord> for StoredInstance {
    fn from(record: StoredInstanceRecord) -> Self {
        Self {
            namespace: record.namespace,
            service: record.service,
            id: record.id,
            registration: record.registration.into(),
        }
    }
}

/// A Raft snapshot: every instance, every service's index (those left without instances too),
/// and the registry index.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    #[serde(default)]
    format_version: FormatVersion,
    instances: Vec<StoredInstanceRecord>,
    /// (namespace, service, index of its last change).
    services: Vec<(String, String, u64)>,
    index: u64,
}

impl From<Dumped> for SnapshotRecord {
    fn from(dumped: Dumped) -> Self {
        Self {
            format_version: FormatVersion::CURRENT,
            instances: dumped.instances.into_iter().map(Into::into).collect(),
            services: dumped.services,
            index: dumped.index,
        }
    }
}

impl From<SnapshotRecord> for Dumped {
    fn from(record: SnapshotRecord) -> Self {
        Self {
            instances: record.instances.into_iter().map(Into::into).collect(),
            services: record.services,
            index: record.index,
        }
    }
}
