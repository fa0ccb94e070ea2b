//! The operator's routes: `GET /msakit/dead-letters[?group=…]` lists dead letters,
//! `POST /msakit/dead-letters/{group}/{event_id}/replay` runs one through its handler again.
//! Errors answer `{"error":{"code":…,"message":…}}` like every msakit server.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::EventsError;
use crate::events::Shared;

pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/msakit/dead-letters", get(list))
        .route(
            "/msakit/dead-letters/{group}/{event_id}/replay",
            post(replay),
        )
        .with_state(shared)
}

#[derive(Deserialize)]
struct ListQuery {
    group: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                &rejection.body_text(),
            );
        }
    };
    let limit = query.limit.unwrap_or(100).min(1000);
    match crate::dead_letter::list(shared.pool(), query.group.as_deref(), limit).await {
        Ok(letters) => axum::Json(letters).into_response(),
        Err(error) => failure(&error),
    }
}

async fn replay(
    State(shared): State<Arc<Shared>>,
    Path((group, event_id)): Path<(String, String)>,
) -> Response {
    match shared.replay(&group, &event_id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => failure(&error),
    }
}

fn failure(error: &EventsError) -> Response {
    let (status, code) = match error {
        EventsError::NoSuchDeadLetter { .. } => (StatusCode::NOT_FOUND, "not_found"),
        EventsError::NoHandler { .. } => (StatusCode::CONFLICT, "no_handler"),
        EventsError::ReplayFailed(_) => (StatusCode::CONFLICT, "replay_failed"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    self::error(status, code, &error.to_string())
}

/// The msakit error body.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}
