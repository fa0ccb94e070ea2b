//! Netflix Eureka's REST API over the same registry, so existing Eureka clients work unchanged:
//! an instance registered here is visible through the native API and the reverse.
//!
//! Mounted at `/eureka` and `/eureka/v2`. Documents are JSON when `Accept` mentions json and XML
//! otherwise (also without an `Accept` header), as Eureka does; gzip when asked. Application
//! names are upper case on this API (`ORDERS`) and lower case as native services (`orders`).
//! Leases honour the instance's `leaseInfo.durationInSecs` exactly — without Eureka's doubling.

mod codec;
mod document;

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use msakit_api::registry::{DEFAULT_NAMESPACE, InstanceStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{ApiError, AppState};

pub(crate) use codec::EurekaInfo;

/// How far back `/apps/delta` reaches.
const DELTA_WINDOW_MS: u64 = 3 * 60 * 1000;

/// The Eureka routes, to be nested at `/eureka` and `/eureka/v2`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/apps", get(apps))
        // Clients ask for `apps/` as often as `apps`.
        .route("/apps/", get(apps))
        .route("/apps/delta", get(delta))
        .route("/apps/{app}", get(application).post(register))
        .route(
            "/apps/{app}/{id}",
            get(app_instance).put(heartbeat).delete(cancel),
        )
        .route(
            "/apps/{app}/{id}/status",
            put(set_override).delete(clear_override),
        )
        .route("/apps/{app}/{id}/metadata", put(metadata))
        .route("/instances/{id}", get(instance))
        .route("/vips/{vip}", get(vip))
        .route("/svips/{svip}", get(svip))
        .layer(tower_http::compression::CompressionLayer::new())
}

/// The native service behind a Eureka application name.
fn service_of(app: &str) -> String {
    app.to_ascii_lowercase()
}

/// Answers with `document` (`{"root": inner}`) as JSON or XML, as `headers` ask.
fn respond(headers: &HeaderMap, root: &str, inner: Value) -> Response {
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.to_ascii_lowercase().contains("json"));
    if json {
        (
            [(header::CONTENT_TYPE, "application/json")],
            json!({ root: inner }).to_string(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/xml")],
            document::to_xml(root, &inner),
        )
            .into_response()
    }
}

/// `versions__delta` and `apps__hashcode` of a set of applications: the hash code is the count of
/// instances per status, sorted by status (`DOWN_1_UP_3_`), which clients recompute after
/// applying a delta.
fn applications(state: &AppState, keep: impl Fn(&Value) -> bool) -> Value {
    let mut apps: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (instance, eureka) in state.registry.eureka_view(DEFAULT_NAMESPACE) {
        let rendered = codec::render(&instance, eureka.as_ref(), "ADDED");
        if keep(&rendered) {
            let app = rendered["app"].as_str().unwrap_or_default().to_owned();
            apps.entry(app).or_default().push(rendered);
        }
    }
    let hashcode = hashcode(apps.values().flatten());
    json!({
        "versions__delta": state.registry.index().to_string(),
        "apps__hashcode": hashcode,
        "application": apps
            .into_iter()
            .map(|(name, instance)| json!({"name": name, "instance": instance}))
            .collect::<Vec<_>>(),
    })
}

fn hashcode<'a>(instances: impl Iterator<Item = &'a Value>) -> String {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for instance in instances {
        *counts
            .entry(instance["status"].as_str().unwrap_or("UNKNOWN").to_owned())
            .or_default() += 1;
    }
    counts
        .iter()
        .map(|(status, n)| format!("{status}_{n}_"))
        .collect()
}

async fn apps(State(state): State<AppState>, headers: HeaderMap) -> Response {
    respond(&headers, "applications", applications(&state, |_| true))
}

/// Changes of the last three minutes, each instance with its `actionType`; the hash code is
/// that of the whole registry after them, as clients check.
async fn delta(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (changes, _complete) = state
        .registry
        .changes_after(now.saturating_sub(DELTA_WINDOW_MS));
    let current: BTreeMap<(String, String), (msakit_api::registry::Instance, Option<EurekaInfo>)> =
        state
            .registry
            .eureka_view(DEFAULT_NAMESPACE)
            .into_iter()
            .map(|(i, e)| ((i.service.clone(), i.id.clone()), (i, e)))
            .collect();
    // The last change per instance decides its action.
    let mut last: BTreeMap<(String, String), &crate::registry::ChangeRecord> = BTreeMap::new();
    for change in changes.iter().filter(|c| c.namespace == DEFAULT_NAMESPACE) {
        last.insert((change.service.clone(), change.id.clone()), change);
    }
    let cutoff = now.saturating_sub(DELTA_WINDOW_MS);
    let mut apps: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (key, change) in last {
        let rendered = match current.get(&key) {
            Some((instance, eureka)) if !change.removed => {
                let action = if instance.registered_at_ms >= cutoff {
                    "ADDED"
                } else {
                    "MODIFIED"
                };
                codec::render(instance, eureka.as_ref(), action)
            }
            Some(_) => continue,
            None => codec::render_deleted(&key.0, &key.1),
        };
        let app = rendered["app"].as_str().unwrap_or_default().to_owned();
        apps.entry(app).or_default().push(rendered);
    }
    let full = applications(&state, |_| true);
    let body = json!({
        "versions__delta": full["versions__delta"],
        "apps__hashcode": full["apps__hashcode"],
        "application": apps
            .into_iter()
            .map(|(name, instance)| json!({"name": name, "instance": instance}))
            .collect::<Vec<_>>(),
    });
    respond(&headers, "applications", body)
}

async fn application(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(app) = path?;
    let service = service_of(&app);
    let instances: Vec<Value> = state
        .registry
        .eureka_view(DEFAULT_NAMESPACE)
        .into_iter()
        .filter(|(i, _)| i.service == service)
        .map(|(i, e)| codec::render(&i, e.as_ref(), "ADDED"))
        .collect();
    if instances.is_empty() {
        return Err(ApiError::not_found(format!(
            "application {app} is not registered"
        )));
    }
    let name = instances[0]["app"].clone();
    Ok(respond(
        &headers,
        "application",
        json!({"name": name, "instance": instances}),
    ))
}

fn find(state: &AppState, service: Option<&str>, id: &str) -> Option<Value> {
    state
        .registry
        .eureka_view(DEFAULT_NAMESPACE)
        .into_iter()
        .find(|(i, _)| i.id == id && service.is_none_or(|s| i.service == s))
        .map(|(i, e)| codec::render(&i, e.as_ref(), "ADDED"))
}

async fn app_instance(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((app, id)) = path?;
    let found = find(&state, Some(&service_of(&app)), &id)
        .ok_or_else(|| ApiError::not_found(format!("instance {id} of {app} is not registered")))?;
    Ok(respond(&headers, "instance", found))
}

async fn instance(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(id) = path?;
    let found = find(&state, None, &id)
        .ok_or_else(|| ApiError::not_found(format!("instance {id} is not registered")))?;
    Ok(respond(&headers, "instance", found))
}

async fn vip(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(vip) = path?;
    Ok(respond(
        &headers,
        "applications",
        applications(&state, |i| i["vipAddress"] == vip.as_str()),
    ))
}

async fn svip(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(svip) = path?;
    Ok(respond(
        &headers,
        "applications",
        applications(&state, |i| i["secureVipAddress"] == svip.as_str()),
    ))
}

/// `POST /apps/{APP}`: register (JSON or XML body) → 204.
async fn register(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let Path(app) = path?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_body", "the body is not UTF-8"))?;
    let instance = if is_json {
        let mut value: Value = serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request("malformed_json", format!("invalid JSON: {e}")))?;
        value.get_mut("instance").map(Value::take).ok_or_else(|| {
            ApiError::bad_request("invalid_body", "the body must be {\"instance\": {...}}")
        })?
    } else {
        let (root, value) = document::from_xml(text)
            .map_err(|e| ApiError::bad_request("malformed_xml", format!("invalid XML: {e}")))?;
        if root != "instance" {
            return Err(ApiError::bad_request(
                "invalid_body",
                "the body must be an <instance> element",
            ));
        }
        value
    };
    let parsed = codec::parse(&instance, &app)?;
    state.registry.register_with(
        DEFAULT_NAMESPACE,
        &service_of(&app),
        &parsed.id,
        parsed.request,
        Some(parsed.eureka),
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /apps/{APP}/{ID}?status=&lastDirtyTimestamp=`: renew → 200, or 404 so the client
/// registers again. As in Eureka, the `status` a heartbeat carries does not change the
/// instance's status (clients change it by registering again), so an operator's override
/// removed later falls back to what the instance registered with.
async fn heartbeat(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((app, id)) = path?;
    state
        .registry
        .renew(DEFAULT_NAMESPACE, &service_of(&app), &id)?;
    Ok(StatusCode::OK)
}

/// `DELETE /apps/{APP}/{ID}`: deregister → 200 / 404.
async fn cancel(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((app, id)) = path?;
    state
        .registry
        .deregister(DEFAULT_NAMESPACE, &service_of(&app), &id)?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    value: Option<String>,
}

/// `PUT /apps/{APP}/{ID}/status?value=OUT_OF_SERVICE`: an operator override.
async fn set_override(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((app, id)) = path?;
    let Query(query) = query?;
    let value = query
        .value
        .ok_or_else(|| ApiError::bad_request("invalid_query", "value= is required"))?;
    let status: Option<InstanceStatus> = match value.to_ascii_uppercase().as_str() {
        "UNKNOWN" => None,
        other => Some(codec::status(other).ok_or_else(|| {
            ApiError::bad_request("invalid_status", format!("unknown status {value:?}"))
        })?),
    };
    state
        .registry
        .set_override(DEFAULT_NAMESPACE, &service_of(&app), &id, status)?;
    Ok(StatusCode::OK)
}

/// `DELETE /apps/{APP}/{ID}/status`: remove the override.
async fn clear_override(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((app, id)) = path?;
    state
        .registry
        .set_override(DEFAULT_NAMESPACE, &service_of(&app), &id, None)?;
    Ok(StatusCode::OK)
}

/// `PUT /apps/{APP}/{ID}/metadata?k=v`: add or replace metadata entries.
async fn metadata(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((app, id)) = path?;
    let Query(entries) = query?;
    if entries.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "give metadata as ?key=value",
        ));
    }
    state
        .registry
        .merge_metadata(DEFAULT_NAMESPACE, &service_of(&app), &id, entries)?;
    Ok(StatusCode::OK)
}
