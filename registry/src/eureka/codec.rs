//! Between Eureka's `InstanceInfo` documents and the registry's model.

use std::collections::BTreeMap;

use msakit_api::registry::{Instance, InstanceStatus, RegisterInstance, Scheme};
use msakit_server_kit::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::registry::{Extension, ExtensionData};

const DEFAULT_DATA_CENTER_CLASS: &str = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";

/// What a Eureka registration says beyond the native model, kept to give it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EurekaInfo {
    app: String,
    ip_addr: String,
    port: u16,
    port_enabled: bool,
    secure_port: u16,
    secure_port_enabled: bool,
    vip_address: Option<String>,
    secure_vip_address: Option<String>,
    home_page_url: Option<String>,
    status_page_url: Option<String>,
    health_check_url: Option<String>,
    data_center_class: String,
    data_center_name: String,
    country_id: i64,
    renewal_interval_secs: u64,
    last_dirty_timestamp: Option<String>,
}

impl EurekaInfo {
    /// When the client last changed its registration (its own clock, Unix milliseconds).
    pub(crate) fn last_dirty_timestamp(&self) -> Option<i64> {
        self.last_dirty_timestamp.as_deref()?.trim().parse().ok()
    }
}

/// Kept with the registration by the registry, which does not look inside.
impl ExtensionData for EurekaInfo {
    fn same_as(&self, other: &dyn ExtensionData) -> bool {
        (other as &dyn std::any::Any).downcast_ref::<Self>() == Some(self)
    }
}

/// What a Eureka client said beyond the native model, if `extension` holds it.
pub(crate) fn info(extension: Option<&Extension>) -> Option<&EurekaInfo> {
    extension?.get()
}

/// The data-centre classes Eureka's Java client can instantiate, with the names
/// (`DataCenterInfo.Name`) each may carry: any other makes every Java client fail to parse the
/// whole registry.
const DATA_CENTER_CLASSES: [(&str, &[&str]); 3] = [
    (DEFAULT_DATA_CENTER_CLASS, &["Netflix", "MyOwn"]),
    (
        "com.netflix.appinfo.MyDataCenterInfo",
        &["Netflix", "MyOwn"],
    ),
    ("com.netflix.appinfo.AmazonInfo", &["Amazon"]),
];

/// A parsed registration.
pub(crate) struct Parsed {
    pub(crate) id: String,
    pub(crate) request: RegisterInstance,
    pub(crate) eureka: EurekaInfo,
}

/// A Eureka status name as the registry's status; `UNKNOWN` counts as STARTING.
pub(crate) fn status(name: &str) -> Option<InstanceStatus> {
    match name.to_ascii_uppercase().as_str() {
        "UNKNOWN" => Some(InstanceStatus::Starting),
        other => other.parse().ok(),
    }
}

/// A text field, from a JSON string or number, or an XML element.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(map) => map.get("$").and_then(text),
        _ => None,
    }
}

/// `{"$": 8080, "@enabled": "true"}` (or a plain number): the port and whether it is enabled.
fn port(value: &Value, default: u16, enabled_by_default: bool) -> Result<(u16, bool), ApiError> {
    if value.is_null() {
        return Ok((default, enabled_by_default));
    }
    let number = text(value)
        .and_then(|t| t.trim().parse::<u16>().ok())
        .ok_or_else(|| {
            ApiError::bad_request("invalid_port", format!("port must be 0-65535, got {value}"))
        })?;
    let enabled = match value.get("@enabled") {
        None | Some(Value::Null) => enabled_by_default,
        Some(Value::Bool(b)) => *b,
        Some(other) => text(other).is_some_and(|t| t.eq_ignore_ascii_case("true")),
    };
    Ok((number, enabled))
}

fn required(instance: &Value, field: &str) -> Result<String, ApiError> {
    instance
        .get(field)
        .and_then(text)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_field", format!("{field} is required")))
}

/// Reads an `InstanceInfo` posted to `/apps/{app}`.
pub(crate) fn parse(instance: &Value, app: &str) -> Result<Parsed, ApiError> {
    if !instance.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "instance must be an object",
        ));
    }
    let host = required(instance, "hostName")?;
    let ip_addr = required(instance, "ipAddr")?;
    let body_app = required(instance, "app")?;
    let data_center = instance.get("dataCenterInfo").unwrap_or(&Value::Null);
    let data_center_name = data_center
        .get("name")
        .and_then(text)
        .ok_or_else(|| ApiError::bad_request("missing_field", "dataCenterInfo.name is required"))?;
    let data_center_class = data_center
        .get("@class")
        .and_then(text)
        .unwrap_or_else(|| DEFAULT_DATA_CENTER_CLASS.to_owned());
    match DATA_CENTER_CLASSES
        .iter()
        .find(|(class, _)| *class == data_center_class)
    {
        Some((_, names)) if names.contains(&data_center_name.as_str()) => {}
        _ => {
            return Err(ApiError::bad_request(
                "invalid_data_center",
                format!(
                    "dataCenterInfo {data_center_class:?} named {data_center_name:?} is not one Eureka clients can read"
                ),
            ));
        }
    }
    let last_dirty_timestamp = instance
        .get("lastDirtyTimestamp")
        .and_then(text)
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            t.trim().parse::<i64>().map(|n| n.to_string()).map_err(|_| {
                ApiError::bad_request(
                    "invalid_field",
                    format!("lastDirtyTimestamp must be an integer, got {t:?}"),
                )
            })
        })
        .transpose()?;
    if !body_app.eq_ignore_ascii_case(app) {
        return Err(ApiError::bad_request(
            "app_mismatch",
            format!("the body's app {body_app:?} differs from the path's {app:?}"),
        ));
    }
    let id = instance
        .get("instanceId")
        .and_then(text)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| host.clone());
    let (port_number, port_enabled) =
        port(instance.get("port").unwrap_or(&Value::Null), 7001, true)?;
    let (secure_port, secure_port_enabled) = port(
        instance.get("securePort").unwrap_or(&Value::Null),
        7002,
        false,
    )?;
    let reported = instance
        .get("status")
        .and_then(text)
        .map_or(Some(InstanceStatus::Up), |s| status(&s))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_status",
                "status must be UP, DOWN, STARTING, OUT_OF_SERVICE or UNKNOWN",
            )
        })?;
    let lease = instance.get("leaseInfo").unwrap_or(&Value::Null);
    let lease_secs = |field: &str, default: u64| {
        lease
            .get(field)
            .and_then(text)
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(default)
    };
    let metadata: BTreeMap<String, String> = match instance.get("metadata") {
        Some(Value::Object(map)) => map
            .iter()
            .filter(|(k, _)| !k.starts_with('@'))
            .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
            .collect(),
        _ => BTreeMap::new(),
    };
    let (port, scheme) = if !port_enabled && secure_port_enabled {
        (secure_port, Scheme::Https)
    } else {
        (port_number, Scheme::Http)
    };
    let field = |name: &str| instance.get(name).and_then(text).filter(|t| !t.is_empty());
    Ok(Parsed {
        id,
        request: RegisterInstance {
            host,
            port,
            scheme,
            zone: metadata.get("zone").cloned(),
            weight: 100,
            metadata,
            status: reported,
            lease_ttl_ms: Some(lease_secs("durationInSecs", 90).saturating_mul(1000)),
            health_check: None,
        },
        eureka: EurekaInfo {
            app: body_app.to_ascii_uppercase(),
            ip_addr,
            port: port_number,
            port_enabled,
            secure_port,
            secure_port_enabled,
            vip_address: field("vipAddress"),
            secure_vip_address: field("secureVipAddress"),
            home_page_url: field("homePageUrl"),
            status_page_url: field("statusPageUrl"),
            health_check_url: field("healthCheckUrl"),
            data_center_class,
            data_center_name,
            // Java reads both as `int`: a larger number would fail every client's parse.
            country_id: field("countryId")
                .and_then(|c| c.parse::<i128>().ok())
                .map_or(1, |c| c.clamp(i32::MIN.into(), i32::MAX.into()) as i64),
            renewal_interval_secs: lease_secs("renewalIntervalInSecs", 30).min(i32::MAX as u64),
            last_dirty_timestamp,
        },
    })
}

fn port_value(number: u16, enabled: bool) -> Value {
    json!({"$": number, "@enabled": if enabled { "true" } else { "false" }})
}

/// An instance as Eureka's `InstanceInfo`; instances registered natively get Eureka's defaults.
pub(crate) fn render(instance: &Instance, eureka: Option<&EurekaInfo>, action: &str) -> Value {
    let app = eureka.map_or_else(|| instance.service.to_ascii_uppercase(), |e| e.app.clone());
    let (port, secure_port) = match eureka {
        Some(e) => (
            port_value(e.port, e.port_enabled),
            port_value(e.secure_port, e.secure_port_enabled),
        ),
        None if instance.scheme == Scheme::Https => (
            port_value(instance.port, false),
            port_value(instance.port, true),
        ),
        None => (port_value(instance.port, true), port_value(443, false)),
    };
    let scheme = if instance.scheme == Scheme::Https {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{}:{}", instance.host, instance.port);
    let url = |given: Option<&Option<String>>, path: &str| {
        given
            .and_then(|g| g.clone())
            .unwrap_or_else(|| format!("{base}{path}"))
    };
    // Spring Cloud LoadBalancer reads an instance's zone from its metadata; a natively
    // registered instance keeps it in its own field. Built straight into the document (no copy
    // of the map: every instance of a full fetch passes here).
    let mut metadata = json!(instance.metadata);
    if let (Some(zone), Some(map)) = (&instance.zone, metadata.as_object_mut()) {
        map.entry("zone").or_insert_with(|| zone.as_str().into());
    }
    if metadata.as_object().is_some_and(serde_json::Map::is_empty) {
        metadata = json!({"@class": "java.util.Collections$EmptyMap"});
    }
    let ttl_secs = (instance.lease_ttl_ms / 1000).max(1);
    let overridden = instance
        .status_override
        .map_or("UNKNOWN", InstanceStatus::as_str);
    let dirty = eureka
        .and_then(|e| e.last_dirty_timestamp.clone())
        .unwrap_or_else(|| instance.registered_at_ms.to_string());
    json!({
        "instanceId": instance.id,
        "hostName": instance.host,
        "app": app,
        "ipAddr": eureka.map_or(instance.host.as_str(), |e| e.ip_addr.as_str()),
        "status": instance.status.as_str(),
        "overriddenStatus": overridden,
        "overriddenstatus": overridden,
        "port": port,
        "securePort": secure_port,
        "countryId": eureka.map_or(1, |e| e.country_id),
        "dataCenterInfo": {
            "@class": eureka.map_or(DEFAULT_DATA_CENTER_CLASS, |e| e.data_center_class.as_str()),
            "name": eureka.map_or("MyOwn", |e| e.data_center_name.as_str()),
        },
        "leaseInfo": {
            "renewalIntervalInSecs": eureka.map_or((ttl_secs / 3).max(1), |e| e.renewal_interval_secs),
            "durationInSecs": ttl_secs,
            "registrationTimestamp": instance.registered_at_ms,
            "lastRenewalTimestamp": instance.last_renewed_at_ms,
            "evictionTimestamp": 0,
            "serviceUpTimestamp": instance.registered_at_ms,
        },
        "metadata": metadata,
        "homePageUrl": url(eureka.map(|e| &e.home_page_url), "/"),
        "statusPageUrl": url(eureka.map(|e| &e.status_page_url), "/info"),
        "healthCheckUrl": url(eureka.map(|e| &e.health_check_url), "/health"),
        "vipAddress": eureka.and_then(|e| e.vip_address.clone()).unwrap_or_else(|| instance.service.clone()),
        "secureVipAddress": eureka.and_then(|e| e.secure_vip_address.clone()).unwrap_or_else(|| instance.service.clone()),
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": instance.last_renewed_at_ms.max(instance.registered_at_ms).to_string(),
        "lastDirtyTimestamp": dirty,
        "actionType": action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Value {
        json!({
            "hostName": "host-1", "app": "ORDERS", "ipAddr": "10.0.0.1",
            "port": {"$": 8080, "@enabled": true}, "securePort": {"$": "8443", "@enabled": "false"},
            "dataCenterInfo": {"@class": DEFAULT_DATA_CENTER_CLASS, "name": "MyOwn"},
            "leaseInfo": {"durationInSecs": 30, "renewalIntervalInSecs": 10},
            "metadata": {"zone": "eu-1", "@class": "java.util.HashMap"},
            "vipAddress": "orders-vip"
        })
    }

    #[test]
    fn a_registration_maps_to_the_native_model() {
        let parsed = parse(&body(), "orders").unwrap();
        assert_eq!(parsed.id, "host-1", "instanceId falls back to hostName");
        assert_eq!(parsed.request.port, 8080);
        assert_eq!(parsed.request.lease_ttl_ms, Some(30_000), "no 2x");
        assert_eq!(parsed.request.zone.as_deref(), Some("eu-1"));
        assert!(!parsed.request.metadata.contains_key("@class"));
    }

    #[test]
    fn missing_fields_and_a_wrong_app_are_refused() {
        for field in ["hostName", "ipAddr", "app", "dataCenterInfo"] {
            let mut b = body();
            b.as_object_mut().unwrap().remove(field);
            assert!(parse(&b, "ORDERS").is_err(), "{field}");
        }
        assert!(parse(&body(), "PAYMENTS").is_err());
    }

    /// What Eureka's Java client cannot read is refused at registration, or clamped: one such
    /// instance would make every Java client fail to parse the whole registry.
    #[test]
    fn values_java_clients_cannot_read_are_refused_or_clamped() {
        for data_center in [
            json!({"@class": DEFAULT_DATA_CENTER_CLASS, "name": "Mars"}),
            json!({"@class": "com.example.Unknown", "name": "MyOwn"}),
            json!({"@class": DEFAULT_DATA_CENTER_CLASS, "name": "Amazon"}),
            json!({"@class": "com.netflix.appinfo.AmazonInfo", "name": "MyOwn"}),
        ] {
            let mut instance = body();
            instance["dataCenterInfo"] = data_center.clone();
            assert!(parse(&instance, "ORDERS").is_err(), "{data_center}");
        }
        let mut instance = body();
        instance["dataCenterInfo"] =
            json!({"@class": "com.netflix.appinfo.AmazonInfo", "name": "Amazon"});
        assert!(parse(&instance, "ORDERS").is_ok());
        let mut instance = body();
        instance["lastDirtyTimestamp"] = json!("1.7e12");
        assert!(parse(&instance, "ORDERS").is_err());
        instance["lastDirtyTimestamp"] = json!(1_700_000_000_000_i64);
        let parsed = parse(&instance, "ORDERS").unwrap();
        assert_eq!(
            parsed.eureka.last_dirty_timestamp(),
            Some(1_700_000_000_000)
        );
        let mut instance = body();
        instance["countryId"] = json!(u64::MAX.to_string());
        instance["leaseInfo"]["renewalIntervalInSecs"] = json!(u64::MAX.to_string());
        let parsed = parse(&instance, "ORDERS").unwrap();
        assert_eq!(parsed.eureka.country_id, i64::from(i32::MAX));
        assert_eq!(parsed.eureka.renewal_interval_secs, i32::MAX as u64);
    }

    /// Found by the `eureka_xml` fuzz target: a huge lease duration overflowed.
    #[test]
    fn a_huge_lease_duration_saturates() {
        let mut instance = body();
        instance["leaseInfo"] = json!({"durationInSecs": u64::MAX.to_string()});
        let parsed = parse(&instance, "ORDERS").unwrap();
        assert_eq!(parsed.request.lease_ttl_ms, Some(u64::MAX));
    }
}
