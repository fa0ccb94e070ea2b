//! The public API's registration types as the log and the store keep them: the same JSON, but
//! types of the registry's own that ignore fields they do not know (the API's refuse them).

use std::collections::BTreeMap;

use msakit_api::registry::{
    CheckKind, HealthCheck, Instance, InstanceStatus, RegisterInstance, Scheme,
};
use serde::{Deserialize, Serialize};

/// An instance's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum StatusRecord {
    Up,
    Down,
    Starting,
    OutOfService,
}

impl From<InstanceStatus> for StatusRecord {
    fn from(status: InstanceStatus) -> Self {
        match status {
            InstanceStatus::Up => Self::Up,
            InstanceStatus::Down => Self::Down,
            InstanceStatus::Starting => Self::Starting,
            InstanceStatus::OutOfService => Self::OutOfService,
        }
    }
}

impl From<StatusRecord> for InstanceStatus {
    fn from(status: StatusRecord) -> Self {
        match status {
            StatusRecord::Up => Self::Up,
            StatusRecord::Down => Self::Down,
            StatusRecord::Starting => Self::Starting,
            StatusRecord::OutOfService => Self::OutOfService,
        }
    }
}

/// How an instance is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SchemeRecord {
    Http,
    Https,
}

impl From<Scheme> for SchemeRecord {
    fn from(scheme: Scheme) -> Self {
        match scheme {
            Scheme::Http => Self::Http,
            Scheme::Https => Self::Https,
        }
    }
}

impl From<SchemeRecord> for Scheme {
    fn from(scheme: SchemeRecord) -> Self {
        match scheme {
            SchemeRecord::Http => Self::Http,
            SchemeRecord::Https => Self::Https,
        }
    }
}

/// A health check's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CheckKindRecord {
    Http,
    Tcp,
}

/// A health check the registry runs against an instance. Every field is always written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HealthCheckRecord {
    #[serde(rename = "type")]
    kind: CheckKindRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    interval_ms: u64,
    timeout_ms: u64,
    failures_before_down: u32,
    successes_before_up: u32,
}

impl From<HealthCheck> for HealthCheckRecord {
    fn from(check: HealthCheck) -> Self {
        Self {
            kind: match check.kind {
                CheckKind::Http => CheckKindRecord::Http,
                CheckKind::Tcp => CheckKindRecord::Tcp,
            },
            path: check.path,
            interval_ms: check.interval_ms,
            timeout_ms: check.timeout_ms,
            failures_before_down: check.failures_before_down,
            successes_before_up: check.successes_before_up,
        }
    }
}

impl From<HealthCheckRecord> for HealthCheck {
    fn from(check: HealthCheckRecord) -> Self {
        Self {
            kind: match check.kind {
                CheckKindRecord::Http => CheckKind::Http,
                CheckKindRecord::Tcp => CheckKind::Tcp,
            },
            path: check.path,
            interval_ms: check.interval_ms,
            timeout_ms: check.timeout_ms,
            failures_before_down: check.failures_before_down,
            successes_before_up: check.successes_before_up,
        }
    }
}

/// A registration request, checked and with its lease decided, as a log entry carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RegistrationRequestRecord {
    host: String,
    port: u16,
    scheme: SchemeRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zone: Option<String>,
    weight: u32,
    metadata: BTreeMap<String, String>,
    status: StatusRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheckRecord>,
}

impl From<RegisterInstance> for RegistrationRequestRecord {
    fn from(request: RegisterInstance) -> Self {
        Self {
            host: request.host,
            port: request.port,
            scheme: request.scheme.into(),
            zone: request.zone,
            weight: request.weight,
            metadata: request.metadata,
            status: request.status.into(),
            lease_ttl_ms: request.lease_ttl_ms,
            health_check: request.health_check.map(Into::into),
        }
    }
}

impl From<RegistrationRequestRecord> for RegisterInstance {
    fn from(request: RegistrationRequestRecord) -> Self {
        Self {
            host: request.host,
            port: request.port,
            scheme: request.scheme.into(),
            zone: request.zone,
            weight: request.weight,
            metadata: request.metadata,
            status: request.status.into(),
            lease_ttl_ms: request.lease_ttl_ms,
            health_check: request.health_check.map(Into::into),
        }
    }
}

/// An instance as a health check probed it, as a log entry carries the check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstanceRecord {
    id: String,
    service: String,
    namespace: String,
    host: String,
    port: u16,
    scheme: SchemeRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zone: Option<String>,
    weight: u32,
    metadata: BTreeMap<String, String>,
    status: StatusRecord,
    reported_status: StatusRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check_passing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheckRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status_override: Option<StatusRecord>,
    lease_ttl_ms: u64,
    registered_at_ms: u64,
    last_renewed_at_ms: u64,
    modify_index: u64,
}

impl From<Instance> for InstanceRecord {
    fn from(i: Instance) -> Self {
        Self {
            id: i.id,
            service: i.service,
            namespace: i.namespace,
            host: i.host,
            port: i.port,
            scheme: i.scheme.into(),
            zone: i.zone,
            weight: i.weight,
            metadata: i.metadata,
            status: i.status.into(),
            reported_status: i.reported_status.into(),
            check_passing: i.check_passing,
            health_check: i.health_check.map(Into::into),
            status_override: i.status_override.map(Into::into),
            lease_ttl_ms: i.lease_ttl_ms,
            registered_at_ms: i.registered_at_ms,
            last_renewed_at_ms: i.last_renewed_at_ms,
            modify_index: i.modify_index,
        }
    }
}

impl From<InstanceRecord> for Instance {
    fn from(i: InstanceRecord) -> Self {
        Self {
            id: i.id,
            service: i.service,
            namespace: i.namespace,
            host: i.host,
            port: i.port,
            scheme: i.scheme.into(),
            zone: i.zone,
            weight: i.weight,
            metadata: i.metadata,
            status: i.status.into(),
            reported_status: i.reported_status.into(),
            check_passing: i.check_passing,
            health_check: i.health_check.map(Into::into),
            status_override: i.status_override.map(Into::into),
            lease_ttl_ms: i.lease_ttl_ms,
            registered_at_ms: i.registered_at_ms,
            last_renewed_at_ms: i.last_renewed_at_ms,
            modify_index: i.modify_index,
        }
    }
}
