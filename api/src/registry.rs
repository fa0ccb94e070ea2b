//! The registry's native API (`/v1/...`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The response header carrying the registry index a response reflects; pass it back as
/// `?index=` to block until something changes after it.
pub const INDEX_HEADER: &str = "x-msakit-index";

/// The namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "public";

/// An instance's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// Serving traffic.
    Up,
    /// Not serving (failed a health check, or said so itself).
    Down,
    /// Starting, not yet ready for traffic.
    Starting,
    /// Taken out of rotation by an operator (e.g. for a drain).
    OutOfService,
}

impl InstanceStatus {
    /// Every status, in sort order.
    pub const ALL: [InstanceStatus; 4] = [
        InstanceStatus::Down,
        InstanceStatus::OutOfService,
        InstanceStatus::Starting,
        InstanceStatus::Up,
    ];

    /// The wire spelling, e.g. `OUT_OF_SERVICE`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Up => "UP",
            InstanceStatus::Down => "DOWN",
            InstanceStatus::Starting => "STARTING",
            InstanceStatus::OutOfService => "OUT_OF_SERVICE",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown status '{}' (expected UP, DOWN, STARTING or OUT_OF_SERVICE)",
            self.0
        )
    }
}

impl std::error::Error for UnknownStatus {}

impl FromStr for InstanceStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// How to reach an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

/// Body of `PUT /v1/services/{service}/instances/{id}`: register, or update a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterInstance {
    /// Host name or IP address.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 253))]
    pub host: String,
    /// Port, 1–65535.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub port: u16,
    /// `http` (default) or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// Availability zone, for zone-aware balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Relative weight for balancing, 1–10000. Default 100.
    #[serde(default = "default_weight")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub weight: u32,
    /// Free-form metadata (bounded in entries and size by the server).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The status the instance reports. Default UP.
    #[serde(default = "default_status")]
    pub status: InstanceStatus,
    /// The lease the instance asks for, in milliseconds; the server clamps it to its bounds.
    /// Default: the server's (15 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<u64>,
    /// A check the registry runs against the instance itself, Consul style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// A server-side health check: the registry probes the instance every `interval_ms` and marks it
/// DOWN after `failures_before_down` failures in a row, UP again after `successes_before_up`
/// successes in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `http` (a GET of `path` must answer 2xx) or `tcp` (a connection must open).
    #[serde(rename = "type")]
    pub kind: CheckKind,
    /// The path of an HTTP check, e.g. `/health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between probes, at most an hour and at least the registry's minimum (1 s by
    /// default). Default 10 s.
    #[serde(default = "default_interval_ms")]
    #[cfg_attr(feature = "openapi", schema(maximum = 3600000))]
    pub interval_ms: u64,
    /// A probe slower than this fails; at most `interval_ms`. Default 2 s.
    #[serde(default = "default_timeout_ms")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600000))]
    pub timeout_ms: u64,
    /// Failures in a row before the instance is marked DOWN, 1–100. Default 3.
    #[serde(default = "default_failures")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub failures_before_down: u32,
    /// Successes in a row before it is marked UP again, 1–100. Default 2.
    #[serde(default = "default_successes")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub successes_before_up: u32,
}

/// The kind of a server-side health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// An HTTP GET that must answer 2xx.
    Http,
    /// A TCP connection that must open.
    Tcp,
}

fn default_interval_ms() -> u64 {
    10_000
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_failures() -> u32 {
    3
}

fn default_successes() -> u32 {
    2
}

fn default_weight() -> u32 {
    100
}

fn default_status() -> InstanceStatus {
    InstanceStatus::Up
}

/// Body of `PUT /v1/services/{service}/instances/{id}/status`: an operator override, which wins
/// over what the instance reports; `null` removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StatusOverride {
    /// The status to force, or `null` to go back to the reported one.
    pub status: Option<InstanceStatus>,
}

/// A lease as granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lease {
    /// Without a heartbeat for this long, the instance is removed.
    pub ttl_ms: u64,
    /// How often to heartbeat (a third of the TTL).
    pub renew_interval_ms: u64,
}

/// Response of a registration or a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseGranted {
    /// The instance as registered.
    pub instance: Instance,
    /// The lease.
    pub lease: Lease,
}

/// A registered instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    /// Unique within its service.
    pub id: String,
    /// The service it belongs to.
    pub service: String,
    /// The namespace it lives in.
    pub namespace: String,
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Availability zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Relative weight.
    pub weight: u32,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// The effective status: the override if any; else DOWN if the registry's health check
    /// fails; else the reported one.
    pub status: InstanceStatus,
    /// What the instance itself reports.
    pub reported_status: InstanceStatus,
    /// The verdict of the registry's health check, if the instance has one and it has decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_passing: Option<bool>,
    /// The registry's health check of this instance, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// An operator's override, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_override: Option<InstanceStatus>,
    /// The lease TTL in milliseconds.
    pub lease_ttl_ms: u64,
    /// When it registered (Unix milliseconds).
    pub registered_at_ms: u64,
    /// When it last renewed its lease (Unix milliseconds).
    pub last_renewed_at_ms: u64,
    /// The registry index of its last change.
    pub modify_index: u64,
}

/// One service in `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceSummary {
    /// The service name.
    pub name: String,
    /// Instances registered.
    pub instances: u64,
    /// Instances by effective status (statuses with none are left out).
    pub by_status: BTreeMap<InstanceStatus, u64>,
    /// The index of the service's last change.
    pub index: u64,
}

/// Response of `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceList {
    /// The namespace listed.
    pub namespace: String,
    /// The registry index this list reflects.
    pub index: u64,
    /// Services with at least one instance, by name.
    pub services: Vec<ServiceSummary>,
}

/// Response of `GET /v1/services/{service}`, and one service of a watch snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceInstances {
    /// The namespace.
    pub namespace: String,
    /// The service.
    pub service: String,
    /// The index of the service's last change.
    pub index: u64,
    /// Its instances (after filters), by id.
    pub instances: Vec<Instance>,
}

/// A change, as sent to watchers (`event: change` on the SSE stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeEvent {
    /// The registry index of this change; changes arrive in increasing index order.
    pub index: u64,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// An instance registered, or changed its registration or status.
    Upserted {
        /// The instance as it now is.
        instance: Instance,
    },
    /// An instance left: deregistered, or its lease expired.
    Removed {
        /// Its namespace.
        namespace: String,
        /// Its service.
        service: String,
        /// Its id.
        id: String,
        /// Why it left.
        reason: RemovalReason,
    },
}

/// Why an instance left the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// It (or an operator) deregistered it.
    Deregistered,
    /// Its lease ran out.
    Expired,
}

/// The first event of a watch stream (`event: snapshot`): every watched service as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Snapshot {
    /// The registry index the snapshot reflects; changes follow from the next index on.
    pub index: u64,
    /// The watched services that have instances.
    pub services: Vec<ServiceInstances>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_in_any_case() {
        assert_eq!(
            "out_of_service".parse::<InstanceStatus>().unwrap(),
            InstanceStatus::OutOfService
        );
        assert_eq!("UP".parse::<InstanceStatus>().unwrap(), InstanceStatus::Up);
        assert!("SIDEWAYS".parse::<InstanceStatus>().is_err());
    }

    #[test]
    fn registration_defaults() {
        let r: RegisterInstance =
            serde_json::from_str(r#"{"host":"10.0.0.1","port":8080}"#).unwrap();
        assert_eq!(
            (r.weight, r.status, r.scheme),
            (100, InstanceStatus::Up, Scheme::Http)
        );
        assert!(
            serde_json::from_str::<RegisterInstance>(r#"{"host":"a","port":1,"bogus":1}"#).is_err()
        );
    }

    #[test]
    fn change_events_are_tagged() {
        let event = ChangeEvent {
            index: 7,
            change: Change::Removed {
                namespace: "public".into(),
                service: "a".into(),
                id: "1".into(),
                reason: RemovalReason::Expired,
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "removed");
        assert_eq!(json["reason"], "expired");
        assert_eq!(json["index"], 7);
    }
}
