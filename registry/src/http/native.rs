//! The native `/v1` API: register, heartbeat, deregister, override, look up — and blocking
//! queries on a service.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use msakit_api::error::ErrorBody;
use msakit_api::registry::{
    DEFAULT_NAMESPACE, INDEX_HEADER, Instance, InstanceStatus, LeaseGranted, RegisterInstance,
    ServiceInstances, ServiceList, StatusOverride,
};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use crate::registry::InstanceFilter;
use crate::validate::{self, NameKind};
use msakit_server_kit::{Rendered, blocking_query, wait_for_change};

/// `?namespace=` on every endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NamespaceQuery {
    /// The namespace; default `public`.
    namespace: Option<String>,
}

impl NamespaceQuery {
    fn namespace(&self) -> Result<&str, ApiError> {
        namespace(self.namespace.as_deref())
    }
}

/// The namespace asked for (default `public`), checked as every name is: reads refuse a name no
/// write could have made, as the OpenAPI document says.
fn namespace(asked: Option<&str>) -> Result<&str, ApiError> {
    let namespace = asked.unwrap_or(DEFAULT_NAMESPACE);
    validate::name(NameKind::Namespace, namespace)?;
    Ok(namespace)
}

/// Query of `GET /v1/services/{service}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ServiceQuery {
    /// The namespace; default `public`.
    namespace: Option<String>,
    /// Only instances with this status (`UP`, `DOWN`, `STARTING`, `OUT_OF_SERVICE`).
    #[param(pattern = "^(UP|DOWN|STARTING|OUT_OF_SERVICE)$")]
    status: Option<String>,
    /// Only instances in this zone.
    zone: Option<String>,
    /// Block until the service changes after this index (from the `X-Msakit-Index` header).
    index: Option<u64>,
    /// How long to block: `30s`, `500ms`, or plain seconds. Default 5 min, capped by the server.
    wait: Option<String>,
}

fn with_index<T: serde::Serialize>(index: u64, body: T) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(INDEX_HEADER, HeaderValue::from(index));
    (headers, Json(body)).into_response()
}

/// Register an instance, or update its registration (idempotent); renews its lease.
#[utoipa::path(put, path = "/v1/services/{service}/instances/{id}",
    params(("service" = String, Path), ("id" = String, Path), NamespaceQuery),
    request_body = RegisterInstance,
    responses((status = 200, body = LeaseGranted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
    body: Result<Json<RegisterInstance>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Path((service, id)) = path?;
    let Query(query) = query?;
    let Json(body) = body?;
    let granted = state
        .writes
        .register(query.namespace()?, &service, &id, body, None)
        .await?;
    Ok(with_index(granted.instance.modify_index, granted))
}

/// Renew an instance's lease. 404 when the registry does not know it: register again.
#[utoipa::path(put, path = "/v1/services/{service}/instances/{id}/heartbeat",
    params(("service" = String, Path), ("id" = String, Path), NamespaceQuery),
    responses((status = 200, body = LeaseGranted), (status = 404, body = ErrorBody)))]
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
) -> Result<Json<LeaseGranted>, ApiError> {
    let Path((service, id)) = path?;
    let Query(query) = query?;
    Ok(Json(state.writes.renew(
        query.namespace()?,
        &service,
        &id,
    )?))
}

/// Remove an instance.
#[utoipa::path(delete, path = "/v1/services/{service}/instances/{id}",
    params(("service" = String, Path), ("id" = String, Path), NamespaceQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn deregister(
    State(state): State<AppState>,
    who: crate::audit::Who,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((service, id)) = path?;
    let Query(query) = query?;
    state
        .writes
        .deregister(query.namespace()?, &service, &id)
        .await?;
    state.audit.record(
        &who,
        "deregister",
        format!("{}/{service}/{id}", query.namespace()?),
        String::new(),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Set (or clear, with `null`) an operator's status override, e.g. OUT_OF_SERVICE for a drain.
#[utoipa::path(put, path = "/v1/services/{service}/instances/{id}/status",
    params(("service" = String, Path), ("id" = String, Path), NamespaceQuery),
    request_body = StatusOverride,
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_status(
    State(state): State<AppState>,
    who: crate::audit::Who,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
    body: Result<Json<StatusOverride>, JsonRejection>,
) -> Result<Json<Instance>, ApiError> {
    let Path((service, id)) = path?;
    let Query(query) = query?;
    let Json(body) = body?;
    let instance = state
        .writes
        .set_override(query.namespace()?, &service, &id, body.status)
        .await?;
    state.audit.record_override(
        &who,
        format!("{}/{service}/{id}", query.namespace()?),
        body.status,
    );
    Ok(Json(instance))
}

/// One instance.
#[utoipa::path(get, path = "/v1/services/{service}/instances/{id}",
    params(("service" = String, Path), ("id" = String, Path), NamespaceQuery),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_instance(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
) -> Result<Json<Instance>, ApiError> {
    let Path((service, id)) = path?;
    let Query(query) = query?;
    validate::name(NameKind::Service, &service)?;
    validate::name(NameKind::InstanceId, &id)?;
    state
        .registry
        .service(query.namespace()?, &service, &InstanceFilter::default())
        .instances
        .into_iter()
        .find(|i| i.id == id)
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "instance {id} of service {service} is not registered"
            ))
        })
}

/// Services with instance counts by status.
#[utoipa::path(get, path = "/v1/services", params(NamespaceQuery),
    responses((status = 200, body = ServiceList)))]
pub(crate) async fn list_services(
    State(state): State<AppState>,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let list = state.registry.services(query.namespace()?);
    Ok(with_index(list.index, list))
}

/// A service's instances, filtered; with `index`, a blocking query that returns as soon as the
/// service changes after that index, or at the wait.
#[utoipa::path(get, path = "/v1/services/{service}",
    params(("service" = String, Path), ServiceQuery),
    responses((status = 200, body = ServiceInstances, headers(("x-msakit-index" = u64))),
        (status = 400, body = ErrorBody)))]
pub(crate) async fn get_service(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ServiceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(service) = path?;
    let Query(query) = query?;
    let namespace = namespace(query.namespace.as_deref())?;
    validate::name(NameKind::Service, &service)?;
    let filter = InstanceFilter {
        status: query
            .status
            .as_deref()
            .map(|status| match status {
                // Exactly as the document's pattern says (the parser also takes lower case).
                "UP" | "DOWN" | "STARTING" | "OUT_OF_SERVICE" => {
                    status.parse::<InstanceStatus>().map_err(|e| e.to_string())
                }
                _ => Err(format!(
                    "status must be UP, DOWN, STARTING or OUT_OF_SERVICE, got {status:?}"
                )),
            })
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_status", e.to_string()))?,
        zone: query.zone.clone(),
    };
    let blocking = blocking_query(
        query.index,
        query.wait.as_deref(),
        state.config.watch.max_wait,
    )?;
    if let Some((index, wait)) = blocking {
        let updates = state.registry.index_updates();
        wait_for_change(updates, index, wait, &state.shutdown, || {
            state.registry.service_index(namespace, &service)
        })
        .await;
    }
    // Kept answers are of services that exist: an unknown one's answer names the registry's
    // index, which moves with every other service.
    let key = format!(
        "{namespace}\0{service}\0{:?}\0{:?}",
        filter.status, filter.zone
    );
    let service_index = state.registry.service_index(namespace, &service);
    if service_index != 0
        && let Some(kept) = state.lookups.get(&key, service_index)
    {
        return Ok(kept.into_response());
    }
    let instances = state.registry.service(namespace, &service, &filter);
    let rendered = Rendered {
        content_type: "application/json",
        index_header: Some(instances.index),
        body: serde_json::to_vec(&instances)
            .map_err(|e| ApiError::internal(&e))?
            .into(),
    };
    if service_index != 0 {
        state.lookups.keep(key, instances.index, rendered.clone());
    }
    Ok(rendered.into_response())
}

/// The audit log: operators' status overrides and deregistrations (native and Eureka), who
/// (which token) and from where, oldest first; page with `since`. The last 10,000 are kept.
#[utoipa::path(get, path = "/v1/audit", params(msakit_api::audit::AuditQuery),
    responses((status = 200, body = msakit_api::audit::AuditPage), (status = 400, body = ErrorBody)))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    query: Result<Query<msakit_api::audit::AuditQuery>, QueryRejection>,
) -> Result<Json<msakit_api::audit::AuditPage>, ApiError> {
    let Query(query) = query?;
    Ok(Json(state.audit.page(
        msakit_server_kit::check_int64("invalid_query", "since", query.since)?,
        query.limit().ok_or_else(|| {
            ApiError::bad_request("invalid_query", "limit must be between 1 and 1000")
        })?,
    )))
}
