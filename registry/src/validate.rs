//! Checks on names, ids and registrations before they enter the registry.

use msakit_api::registry::{CheckKind, HealthCheck, RegisterInstance};

use crate::config::{HealthChecksConfig, LimitsConfig};
use crate::registry::RegistryError;

/// Every code an [`RegistryError::Invalid`] carries.
const CODES: &[&str] = &[
    "invalid_namespace",
    "invalid_service",
    "invalid_instance_id",
    "invalid_host",
    "invalid_port",
    "invalid_weight",
    "invalid_lease",
    "invalid_zone",
    "metadata_too_large",
    "invalid_metadata",
    "invalid_health_check",
];

/// The code of [`CODES`] that `code` spells (`invalid` if none), for refusals that come back
/// from a cluster's leader.
pub(crate) fn known_code(code: &str) -> &'static str {
    CODES
        .iter()
        .find(|known| **known == code)
        .copied()
        .unwrap_or("invalid")
}

/// Longest namespace, service name or instance id.
const MAX_NAME: usize = 128;

/// [`name`] as an ECMA-262 pattern, for the OpenAPI document.
pub(crate) const NAME_PATTERN: &str = "^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$";

/// What a checked name names, for the error's code and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    /// A namespace.
    Namespace,
    /// A service.
    Service,
    /// An instance id.
    InstanceId,
    /// A zone.
    Zone,
}

impl NameKind {
    fn code(self) -> &'static str {
        match self {
            NameKind::Namespace => "invalid_namespace",
            NameKind::Service => "invalid_service",
            NameKind::InstanceId => "invalid_instance_id",
            NameKind::Zone => "invalid_zone",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            NameKind::Namespace => "namespace",
            NameKind::Service => "service",
            NameKind::InstanceId => "instance id",
            NameKind::Zone => "zone",
        }
    }
}

/// A namespace, service name or instance id: 1–128 characters of `[A-Za-z0-9._:-]`, not starting
/// with a dot. Eureka's upper-case app names pass; path separators and control characters do
/// not.
pub(crate) fn name(kind: NameKind, value: &str) -> Result<(), RegistryError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid {
            code: kind.code(),
            message: format!(
                "{} must be 1-{MAX_NAME} characters of letters, digits, '.', '_', '-', ':' \
                 and not start with '.', got {value:?}",
                kind.noun()
            ),
        })
    }
}

/// A registration's host, port, weight and metadata.
pub(crate) fn registration(
    request: &RegisterInstance,
    limits: &LimitsConfig,
) -> Result<(), RegistryError> {
    let invalid = |code, message: String| Err(RegistryError::Invalid { code, message });
    let host_ok = !request.host.is_empty()
        && request.host.len() <= 253
        && request.host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        });
    if !host_ok {
        return invalid(
            "invalid_host",
            format!(
                "host must be a host name or IP address, got {:?}",
                request.host
            ),
        );
    }
    if request.port == 0 {
        return invalid("invalid_port", "port must be between 1 and 65535".into());
    }
    if !(1..=10_000).contains(&request.weight) {
        return invalid(
            "invalid_weight",
            format!("weight must be between 1 and 10000, got {}", request.weight),
        );
    }
    if let Some(ttl) = request.lease_ttl_ms.filter(|ttl| *ttl > i64::MAX as u64) {
        // Clamped to the registry's bounds anyway, but beyond what the document's int64 says.
        return invalid(
            "invalid_lease",
            format!("lease_ttl_ms must be at most {}, got {ttl}", i64::MAX),
        );
    }
    if let Some(zone) = &request.zone {
        name(NameKind::Zone, zone)?;
    }
    if request.metadata.len() > limits.max_metadata_entries {
        return invalid(
            "metadata_too_large",
            format!(
                "metadata has {} entries, at most {} are allowed",
                request.metadata.len(),
                limits.max_metadata_entries
            ),
        );
    }
    let bytes: usize = request
        .metadata
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if bytes > limits.max_metadata_bytes {
        return invalid(
            "metadata_too_large",
            format!(
                "metadata has {bytes} bytes, at most {} are allowed",
                limits.max_metadata_bytes
            ),
        );
    }
    if request
        .metadata
        .keys()
        .any(|k| k.is_empty() || k.len() > MAX_NAME)
    {
        return invalid(
            "invalid_metadata",
            format!("metadata keys must be 1-{MAX_NAME} bytes"),
        );
    }
    Ok(())
}

/// A health check's settings.
pub(crate) fn health_check(
    check: &HealthCheck,
    config: &HealthChecksConfig,
) -> Result<(), RegistryError> {
    let invalid = |message: String| {
        Err(RegistryError::Invalid {
            code: "invalid_health_check",
            message,
        })
    };
    if !config.enabled {
        return invalid("this registry does not run health checks".into());
    }
    let min = config.min_interval.as_millis() as u64;
    if check.interval_ms < min || check.interval_ms > 3_600_000 {
        return invalid(format!("interval_ms must be between {min} and 3600000"));
    }
    if check.timeout_ms == 0 || check.timeout_ms > check.interval_ms {
        return invalid("timeout_ms must be at least 1 and at most interval_ms".into());
    }
    if !(1..=100).contains(&check.failures_before_down)
        || !(1..=100).contains(&check.successes_before_up)
    {
        return invalid(
            "failures_before_down and successes_before_up must be between 1 and 100".into(),
        );
    }
    match (check.kind, &check.path) {
        (CheckKind::Http, Some(path))
            if path.starts_with('/')
                && path.len() <= 1024
                && !path.chars().any(char::is_control) =>
        {
            Ok(())
        }
        (CheckKind::Http, _) => invalid("an http check needs a path starting with '/'".into()),
        (CheckKind::Tcp, None) => Ok(()),
        (CheckKind::Tcp, Some(_)) => invalid("a tcp check takes no path".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_pattern_is_the_name_check() {
        let pattern = regex::Regex::new(NAME_PATTERN).unwrap();
        let extra = [
            "a".repeat(128),
            "a".repeat(129),
            ".a".into(),
            "a.".into(),
            ":a".into(),
        ];
        let found = msakit_api::openapi::disagreements(
            "aZ0._-:/ é",
            3,
            &extra,
            |s| pattern.is_match(s),
            |s| name(NameKind::Service, s).is_ok(),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn every_code_a_check_gives_reads_back() {
        let source = include_str!("validate.rs");
        for code in CODES {
            assert!(
                source.matches(&format!("\"{code}\"")).count() >= 2,
                "{code}"
            );
        }
        let refused = RegistryError::Invalid {
            code: "invalid_port",
            message: "no".into(),
        };
        let json = serde_json::to_string(&refused).unwrap();
        assert_eq!(
            serde_json::from_str::<RegistryError>(&json).unwrap(),
            refused
        );
    }

    #[test]
    fn names() {
        for good in ["orders", "ORDERS", "orders-v2", "a.b_c:d", "i-0123"] {
            name(NameKind::Service, good).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "a b", "../etc", "ü", &"x".repeat(129)] {
            assert!(name(NameKind::Service, bad).is_err(), "{bad:?}");
        }
    }
}
