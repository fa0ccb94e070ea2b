//! Operational endpoints: health, Prometheus metrics, the OpenAPI document and the dashboard.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use serde::Serialize;
use utoipa::OpenApi;

use super::AppState;
use super::error::ApiError;

/// The OpenAPI document of the native API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "msakit-registry",
        description = "The msakit service registry's native API."
    ),
    paths(
        super::native::register,
        super::native::heartbeat,
        super::native::deregister,
        super::native::set_status,
        super::native::get_instance,
        super::native::list_services,
        super::native::get_service,
        super::native::audit,
        super::watch::stream,
        super::cluster::status,
        super::cluster::add_node,
        super::cluster::remove_node,
        health,
    ),
    components(schemas(
        msakit_api::registry::Change,
        msakit_api::registry::ChangeEvent,
        msakit_api::registry::Snapshot,
        msakit_api::registry::RemovalReason
    ))
)]
pub(crate) struct ApiDoc;

/// Body of `/health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `UP`, or `SELF_PRESERVATION` while eviction is paused.
    status: &'static str,
    /// Instances registered.
    instances: usize,
    /// Whether eviction is paused by self-preservation.
    self_preservation: bool,
    /// The registry index.
    index: u64,
    /// In a cluster: this node's role, term, leader, indexes and members.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<msakit_raft::ClusterStatus>,
}

/// Liveness and state; 200 while serving (self-preservation included, which is a state of the
/// registry's clients' network, not of the registry).
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
pub(crate) async fn health(State(state): State<AppState>) -> Json<Health> {
    let preserving = state.registry.is_self_preserving();
    Json(Health {
        status: if preserving {
            "SELF_PRESERVATION"
        } else {
            "UP"
        },
        instances: state.registry.instance_count(),
        self_preservation: preserving,
        index: state.registry.index(),
        cluster: state.writes.cluster().map(|c| c.status()),
    })
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state
            .metrics
            .render(&state.registry, state.writes.cluster().map(|c| &**c)),
    )
}

pub(crate) async fn openapi() -> impl IntoResponse {
    let mut document = ApiDoc::openapi();
    msakit_api::error::document_error_responses(&mut document);
    let name = crate::validate::NAME_PATTERN;
    msakit_api::openapi::document_parameter_patterns(
        &mut document,
        &[
            ("service", name),
            ("id", name),
            ("namespace", name),
            ("wait", msakit_server_kit::WAIT_PATTERN),
        ],
    );
    Json(document)
}

pub(crate) async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
