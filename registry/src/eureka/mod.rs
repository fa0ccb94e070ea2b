//! Netflix Eureka's REST API over the same registry, so existing Eureka clients work unchanged:
//! an instance registered here is visible through the native API and the reverse.
//!
//! Mounted at `/eureka` and `/eureka/v2`. Documents are JSON when `Accept` mentions json and XML
//! otherwise (also without an `Accept` header), as Eureka does; gzip when asked. Application
//! names are upper case on this API (`ORDERS`) and lower case as native services (`orders`).
//! Leases honour the instance's `leaseInfo.durationInSecs` exactly — without Eureka's doubling.

mod codec;
pub(crate) mod document;
mod rendered;

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
use crate::registry::DeltaEntry;

pub(crate) use codec::EurekaInfo;
pub(crate) use rendered::RenderedDocuments;
use rendered::{Document, Encoding};

/// The hash code of a delta that cannot bring a client up to date.
const INCOMPLETE_DELTA_HASHCODE: &str = "INCOMPLETE_0_";

/// How far back `/apps/delta` reaches.
const DELTA_WINDOW_MS: u64 = 3 * 60 * 1000;

/// The Eureka routes whose answers are the leader's in a cluster, under `prefix` (`/eureka`,
/// `/eureka/v2`). Routed by their whole paths rather than nested: a nested router rewrites every
/// request's URI on the way in.
pub(crate) fn leader_routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/apps"), get(apps))
        // Clients ask for `apps/` as often as `apps`.
        .route(&format!("{prefix}/apps/"), get(apps))
        .route(&format!("{prefix}/apps/delta"), get(delta))
        .route(
            &format!("{prefix}/apps/{{app}}"),
            get(application).post(register),
        )
        .route(
            &format!("{prefix}/apps/{{app}}/{{id}}"),
            get(app_instance).delete(cancel),
        )
        .route(
            &format!("{prefix}/apps/{{app}}/{{id}}/status"),
            put(set_override).delete(clear_override),
        )
        .route(
            &format!("{prefix}/apps/{{app}}/{{id}}/metadata"),
            put(metadata),
        )
        .route(&format!("{prefix}/instances/{{id}}"), get(instance))
        .route(&format!("{prefix}/vips/{{vip}}"), get(vip))
        .route(&format!("{prefix}/svips/{{svip}}"), get(svip))
        .layer(tower_http::compression::CompressionLayer::new())
}

/// The Eureka routes any node answers itself, under `prefix`: heartbeats.
pub(crate) fn local_routes(prefix: &str) -> Router<AppState> {
    Router::new().route(&format!("{prefix}/apps/{{app}}/{{id}}"), put(heartbeat))
}

/// The native service behind a Eureka application name.
fn service_of(app: &str) -> String {
    app.to_ascii_lowercase()
}

/// Answers with `document` (`{"root": inner}`) as JSON or XML, as `headers` ask.
fn respond(headers: &HeaderMap, root: &str, inner: Value) -> Response {
    if wants_json(headers) {
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
    for (instance, eureka) in state.registry.namespace_with_extensions(DEFAULT_NAMESPACE) {
        let rendered = codec::render(&instance, codec::info(eureka.as_ref()), "ADDED");
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

/// The whole registry for `GET /eureka/apps`, rendered one service at a time straight into
/// the response bytes (never as one document tree), on a blocking thread: a million instances
/// cost the size of the response, not many times it, and never stall the async threads.
async fn full_registry(state: &AppState, json: bool) -> Bytes {
    let encoding = if json { Encoding::Json } else { Encoding::Xml };
    let index = state.registry.index();
    let documents = std::sync::Arc::clone(&state.eureka_documents);
    let state = state.clone();
    documents
        .get(Document::Full, encoding, index, move || {
            let hashcode: String = state
                .registry
                .status_counts(DEFAULT_NAMESPACE)
                .iter()
                .map(|(s, n)| format!("{s}_{n}_"))
                .collect();
            let mut document = ApplicationsDocument::new(state.registry.index(), &hashcode, json);
            // A service's instances are one application (or a few, when clients spelled its
            // name in different cases), so they are rendered and written a service at a time.
            for service in state.registry.service_names(DEFAULT_NAMESPACE) {
                let mut apps = RenderedApps::default();
                for (instance, eureka) in state
                    .registry
                    .service_with_extensions(DEFAULT_NAMESPACE, &service)
                {
                    let rendered = codec::render(&instance, codec::info(eureka.as_ref()), "ADDED");
                    apps.add(&rendered, json);
                }
                document.add(&apps);
            }
            document.finish()
        })
        .await
}

/// Instances rendered one at a time, gathered by application: each application's instances
/// as the bytes of its `instance` list (JSON) or elements (XML).
#[derive(Default)]
struct RenderedApps(BTreeMap<String, Vec<u8>>);

impl RenderedApps {
    fn add(&mut self, rendered: &Value, json: bool) {
        let app = rendered["app"].as_str().unwrap_or_default().to_owned();
        let out = self.0.entry(app).or_default();
        if json {
            if !out.is_empty() {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut *out, rendered);
        } else {
            out.extend_from_slice(&document::fragment("instance", rendered));
        }
    }
}

/// The `applications` document, written straight into its bytes (never as one document tree):
/// its header, then each group's applications in turn (an application in two groups is given
/// twice: the delta's removals come in `application` elements of their own).
struct ApplicationsDocument {
    body: Vec<u8>,
    json: bool,
    applications: usize,
}

impl ApplicationsDocument {
    fn new(index: u64, hashcode: &str, json: bool) -> Self {
        let header = if json {
            format!(
                r#"{{"applications":{{"versions__delta":"{index}","apps__hashcode":{},"application":["#,
                serde_json::Value::from(hashcode)
            )
        } else {
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><applications><versions__delta>{index}</versions__delta><apps__hashcode>{}</apps__hashcode>"#,
                quick_xml::escape::escape(hashcode)
            )
        };
        Self {
            body: header.into_bytes(),
            json,
            applications: 0,
        }
    }

    fn add(&mut self, apps: &RenderedApps) {
        for (app, instances) in &apps.0 {
            let body = &mut self.body;
            if self.json {
                if self.applications > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(b"{\"name\":");
                let _ = serde_json::to_writer(&mut *body, app);
                body.extend_from_slice(b",\"instance\":[");
                body.extend_from_slice(instances);
                body.extend_from_slice(b"]}");
            } else {
                body.extend_from_slice(b"<application><name>");
                body.extend_from_slice(quick_xml::escape::escape(app.as_str()).as_bytes());
                body.extend_from_slice(b"</name>");
                body.extend_from_slice(instances);
                body.extend_from_slice(b"</application>");
            }
            self.applications += 1;
        }
    }

    /// The document's bytes, without the spare capacity that growing it left.
    fn finish(mut self) -> Vec<u8> {
        let end: &[u8] = if self.json {
            b"]}}"
        } else {
            b"</applications>"
        };
        self.body.extend_from_slice(end);
        self.body.shrink_to_fit();
        self.body
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.to_ascii_lowercase().contains("json"))
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
    let json = wants_json(&headers);
    let content_type = if json {
        "application/json"
    } else {
        "application/xml"
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        full_registry(&state, json).await,
    )
        .into_response()
}

/// Changes of the last three minutes, each instance with its `actionType`; the hash code is
/// that of the whole registry after them, as clients check, read in the same instant as the
/// changes. A removed instance is described as it was when it left, and removals come in
/// `application` elements of their own: a client that does not know an application adds the
/// whole element of an ADDED instance to its cache, which must not bring a removed one with it.
async fn delta(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let json = wants_json(&headers);
    let (encoding, content_type) = if json {
        (Encoding::Json, "application/json")
    } else {
        (Encoding::Xml, "application/xml")
    };
    let index = state.registry.index();
    let documents = std::sync::Arc::clone(&state.eureka_documents);
    let body = documents
        .get(Document::Delta, encoding, index, move || {
            render_delta(&state, json)
        })
        .await;
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The delta document, rendered.
fn render_delta(state: &AppState, json: bool) -> Vec<u8> {
    let now = crate::registry::unix_ms();
    let cutoff = now.saturating_sub(DELTA_WINDOW_MS);
    let delta = state.registry.delta(DEFAULT_NAMESPACE, cutoff);
    let (mut present, mut departed) = (RenderedApps::default(), RenderedApps::default());
    for entry in &delta.entries {
        match entry {
            DeltaEntry::Present {
                instance,
                extension,
            } => {
                let action = if instance.registered_at_ms >= cutoff {
                    "ADDED"
                } else {
                    "MODIFIED"
                };
                let rendered = codec::render(instance, codec::info(extension.as_ref()), action);
                present.add(&rendered, json);
            }
            DeltaEntry::Departed(gone) => {
                let rendered = codec::render(
                    &gone.instance,
                    codec::info(gone.extension.as_ref()),
                    "DELETED",
                );
                departed.add(&rendered, json);
            }
        }
    }
    let hashcode: String = if delta.complete {
        delta
            .status_counts
            .iter()
            .map(|(status, n)| format!("{status}_{n}_"))
            .collect()
    } else {
        // No status is called that, so no client's recomputed hash matches: each falls back to
        // a full fetch instead of keeping what the missing changes would have removed.
        INCOMPLETE_DELTA_HASHCODE.to_owned()
    };
    let mut document = ApplicationsDocument::new(delta.index, &hashcode, json);
    document.add(&present);
    document.add(&departed);
    document.finish()
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
        .namespace_with_extensions(DEFAULT_NAMESPACE)
        .into_iter()
        .filter(|(i, _)| i.service == service)
        .map(|(i, e)| codec::render(&i, codec::info(e.as_ref()), "ADDED"))
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
        .namespace_with_extensions(DEFAULT_NAMESPACE)
        .into_iter()
        .find(|(i, _)| i.id == id && service.is_none_or(|s| i.service == s))
        .map(|(i, e)| codec::render(&i, codec::info(e.as_ref()), "ADDED"))
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
    state
        .writes
        .register(
            DEFAULT_NAMESPACE,
            &service_of(&app),
            &parsed.id,
            parsed.request,
            Some(parsed.eureka),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The query of a heartbeat; only `lastDirtyTimestamp` matters here.
#[derive(Debug, Deserialize)]
struct HeartbeatQuery {
    #[serde(rename = "lastDirtyTimestamp")]
    last_dirty_timestamp: Option<String>,
}

/// `PUT /apps/{APP}/{ID}?status=&lastDirtyTimestamp=`: renew → 200, or 404 so the client
/// registers again. As in Eureka, the `status` a heartbeat carries does not change the
/// instance's status (clients change it by registering again), so an operator's override
/// removed later falls back to what the instance registered with. Also as in Eureka, a
/// `lastDirtyTimestamp` newer than the registration's is a 404: the client changed its
/// registration (say STARTING → UP) and that registration never arrived, so it sends it again.
async fn heartbeat(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HeartbeatQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((app, id)) = path?;
    let Query(query) = query?;
    let service = service_of(&app);
    let presented = query
        .last_dirty_timestamp
        .and_then(|t| t.trim().parse::<i64>().ok());
    if let Some(presented) = presented {
        let registered = state
            .registry
            .extension(DEFAULT_NAMESPACE, &service, &id)
            .and_then(|e| codec::info(Some(&e))?.last_dirty_timestamp());
        if registered.is_some_and(|registered| presented > registered) {
            return Err(ApiError::not_found(format!(
                "instance {id} of {app} changed since it registered; register again"
            )));
        }
    }
    state.writes.renew_lease(DEFAULT_NAMESPACE, &service, &id)?;
    Ok(StatusCode::OK)
}

/// `DELETE /apps/{APP}/{ID}`: deregister → 200 / 404.
async fn cancel(
    State(state): State<AppState>,
    who: crate::audit::Who,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((app, id)) = path?;
    state
        .writes
        .deregister(DEFAULT_NAMESPACE, &service_of(&app), &id)
        .await?;
    state.audit.record(
        &who,
        "deregister",
        format!("{DEFAULT_NAMESPACE}/{}/{id}", service_of(&app)),
        "eureka".to_owned(),
    );
    Ok(StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    value: Option<String>,
}

/// `PUT /apps/{APP}/{ID}/status?value=OUT_OF_SERVICE`: an operator override.
async fn set_override(
    State(state): State<AppState>,
    who: crate::audit::Who,
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
    override_status(&state, &who, &app, &id, status).await
}

/// Sets (or clears) an operator's override and audits it.
async fn override_status(
    state: &AppState,
    who: &crate::audit::Who,
    app: &str,
    id: &str,
    status: Option<InstanceStatus>,
) -> Result<StatusCode, ApiError> {
    let service = service_of(app);
    state
        .writes
        .set_override(DEFAULT_NAMESPACE, &service, id, status)
        .await?;
    state
        .audit
        .record_override(who, format!("{DEFAULT_NAMESPACE}/{service}/{id}"), status);
    Ok(StatusCode::OK)
}

/// `DELETE /apps/{APP}/{ID}/status`: remove the override.
async fn clear_override(
    State(state): State<AppState>,
    who: crate::audit::Who,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((app, id)) = path?;
    override_status(&state, &who, &app, &id, None).await
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
        .writes
        .merge_metadata(DEFAULT_NAMESPACE, &service_of(&app), &id, entries)
        .await?;
    Ok(StatusCode::OK)
}

/// Parses an instance body as `POST /eureka/apps/{app}` does (the app taken from the body), for
/// the fuzz targets.
pub(crate) fn fuzz_parse(instance: &Value) -> bool {
    let app = instance.get("app").and_then(Value::as_str).unwrap_or("APP");
    codec::parse(instance, app).is_ok()
}
