//! Operational endpoints: health, Prometheus metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::OpenApi;

use super::AppState;
use super::error::ApiError;

/// The OpenAPI document of the native API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "msakit-config-server",
        description = "The msakit config server's native API."
    ),
    paths(
        super::native::put_document,
        super::native::get_document,
        super::native::delete_document,
        super::native::history,
        super::native::rollback,
        super::native::resolve,
        super::native::put_schema,
        super::native::put_file,
        super::native::delete_file,
        super::native::audit,
        super::watch::stream,
        super::cluster::status,
        super::cluster::add_node,
        super::cluster::remove_node,
        health,
    )
)]
pub(crate) struct ApiDoc;

/// Body of `/health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `UP`, or `DEGRADED` while a native-directory file fails to parse.
    status: &'static str,
    /// Documents held.
    documents: usize,
    /// The last change index.
    index: u64,
    /// Whether `{cipher}` values can be served.
    secrets: bool,
    /// The native directory's files that fail to parse (their last good version is served).
    #[serde(skip_serializing_if = "Option::is_none")]
    native_dir_errors: Option<std::collections::BTreeMap<String, String>>,
    /// In cluster mode: role, term, leader, indexes and members.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<crate::cluster::ClusterStatus>,
}

/// Liveness and state.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
pub(crate) async fn health(State(state): State<AppState>) -> Json<Health> {
    let native_dir_errors = state.native.as_ref().map(|n| n.errors());
    let degraded = native_dir_errors.as_ref().is_some_and(|e| !e.is_empty());
    Json(Health {
        status: if degraded { "DEGRADED" } else { "UP" },
        native_dir_errors,
        cluster: state.writes.cluster().map(|c| c.status()),
        documents: state.configs.document_count(),
        index: state.configs.index(),
        secrets: state.configs.cipher().is_some(),
    })
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(
            state.configs.document_count(),
            state.configs.index(),
            state.writes.cluster().map(|c| &**c),
        ),
    )
}

pub(crate) async fn openapi() -> impl IntoResponse {
    let mut document = ApiDoc::openapi();
    msakit_api::error::document_error_responses(&mut document);
    use crate::document::{LABEL_PATTERN, NAME_PATTERN, PATH_PATTERN, PROFILES_PATTERN};
    msakit_api::openapi::document_parameter_patterns(
        &mut document,
        &[
            ("application", NAME_PATTERN),
            ("profile", NAME_PATTERN),
            ("profiles", PROFILES_PATTERN),
            ("label", LABEL_PATTERN),
            ("path", PATH_PATTERN),
            ("wait", msakit_server_kit::WAIT_PATTERN),
        ],
    );
    Json(document)
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
