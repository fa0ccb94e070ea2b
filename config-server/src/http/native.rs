//! The native `/v1` API: documents with versions, history and rollback; the resolved view with
//! blocking queries; schemas; `/encrypt` and `/decrypt`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use msakit_api::config::{
    DocumentVersion, History, MESSAGE_HEADER, Resolved, Rollback, WriteResult,
};
use msakit_api::error::ErrorBody;
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::auth::Identity;
use super::error::ApiError;
use crate::config::Scope;
use crate::document::{self, DocKey};
use crate::secrets::PREFIX;
use msakit_server_kit::Rendered;
use msakit_server_kit::{blocking_query, wait_for_change};

type DocPath = Result<Path<(String, String, String)>, PathRejection>;

fn doc_key(path: DocPath) -> Result<DocKey, ApiError> {
    let Path((application, profile, label)) = path?;
    Ok(DocKey::new(&application, &profile, &label)?)
}

/// Documents mirrored from the native directory change only with their files.
fn writable(state: &AppState, key: &DocKey) -> Result<(), ApiError> {
    match &state.native {
        Some(native) if native.manages(key) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "managed_by_native_dir",
            format!(
                "this document comes from {}; change the file instead",
                native.root().display()
            ),
        )),
        _ => Ok(()),
    }
}

/// `If-Match: "3"` (or `3`, or `W/"3"`) → 3.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse().map(Some).map_err(|_| {
        ApiError::bad_request(
            "invalid_if_match",
            format!("If-Match must be a version number, got {text:?}"),
        )
    })
}

fn message(headers: &HeaderMap) -> String {
    headers
        .get(MESSAGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|m| m.chars().take(500).collect())
        .unwrap_or_default()
}

fn written(result: WriteResult) -> Response {
    let mut response = Json(result).into_response();
    response.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", result.version)).expect("digits"),
    );
    response
}

/// Write a new version of a document; `Content-Type` names the format; `If-Match` makes it a
/// compare-and-set.
#[utoipa::path(put, path = "/v1/config/{application}/{profile}/{label}",
    params(("application" = String, Path), ("profile" = String, Path), ("label" = String, Path)),
    request_body(content = Object, content_type = "application/yaml",
        description = "the document: a map of keys (also JSON or .properties, by Content-Type)"),
    responses((status = 200, body = WriteResult), (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn put_document(
    State(state): State<AppState>,
    identity: Identity,
    path: DocPath,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    identity.require(Scope::Write)?;
    let key = doc_key(path)?;
    writable(&state, &key)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = document::format_of(content_type).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be application/yaml, text/yaml, application/json or text/x-java-properties, got {content_type:?}"),
        )
    })?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("invalid_body", "the document is not UTF-8"))?;
    let result = state
        .configs
        .write(
            key,
            format,
            text,
            &identity.name,
            &message(&headers),
            if_match(&headers)?,
        )
        .await?;
    state.metrics.write();
    Ok(written(result))
}

/// The newest version of a document.
#[utoipa::path(get, path = "/v1/config/{application}/{profile}/{label}",
    params(("application" = String, Path), ("profile" = String, Path), ("label" = String, Path)),
    responses((status = 200, body = DocumentVersion), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_document(
    State(state): State<AppState>,
    identity: Identity,
    path: DocPath,
) -> Result<Response, ApiError> {
    identity.require(Scope::Read)?;
    let document = state.configs.get(&doc_key(path)?)?;
    state.metrics.read();
    let etag = format!("\"{}\"", document.version);
    let mut response = Json(document).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, HeaderValue::from_str(&etag).expect("digits"));
    Ok(response)
}

/// Delete a document: a tombstone version; the history stays.
#[utoipa::path(delete, path = "/v1/config/{application}/{profile}/{label}",
    params(("application" = String, Path), ("profile" = String, Path), ("label" = String, Path)),
    responses((status = 200, body = WriteResult), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_document(
    State(state): State<AppState>,
    identity: Identity,
    path: DocPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    identity.require(Scope::Write)?;
    let result = state
        .configs
        .delete(
            doc_key(path)?,
            &identity.name,
            &message(&headers),
            if_match(&headers)?,
        )
        .await?;
    state.metrics.write();
    Ok(written(result))
}

/// Every version of a document, newest first.
#[utoipa::path(get, path = "/v1/config/{application}/{profile}/{label}/history",
    params(("application" = String, Path), ("profile" = String, Path), ("label" = String, Path)),
    responses((status = 200, body = History), (status = 404, body = ErrorBody)))]
pub(crate) async fn history(
    State(state): State<AppState>,
    identity: Identity,
    path: DocPath,
) -> Result<Json<History>, ApiError> {
    identity.require(Scope::Read)?;
    let versions = state.configs.history(&doc_key(path)?).await?;
    Ok(Json(History { versions }))
}

/// Restore an earlier version, as a new version.
#[utoipa::path(post, path = "/v1/config/{application}/{profile}/{label}/rollback",
    params(("application" = String, Path), ("profile" = String, Path), ("label" = String, Path)),
    request_body = Rollback,
    responses((status = 200, body = WriteResult), (status = 404, body = ErrorBody)))]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    identity: Identity,
    path: DocPath,
    body: Result<Json<Rollback>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    identity.require(Scope::Write)?;
    let key = doc_key(path)?;
    writable(&state, &key)?;
    let Json(body) = body.map_err(|r| ApiError::new(r.status(), "invalid_body", r.body_text()))?;
    let result = state
        .configs
        .rollback(key, body.version, &identity.name)
        .await?;
    state.metrics.write();
    Ok(written(result))
}

/// Query of the resolve endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResolveQuery {
    /// Block until the view changes after this index (from `X-Msakit-Index`).
    index: Option<u64>,
    /// How long to block: `30s`, `500ms` or seconds. Default 5 min, capped by the server.
    wait: Option<String>,
}

/// The profiles of a path segment: comma-separated names, spaces around them allowed (exactly
/// what [`document::PROFILES_PATTERN`] says).
pub(crate) fn profiles(segment: &str) -> Result<Vec<String>, ApiError> {
    let profiles: Vec<String> = segment
        .split(',')
        .map(|p| p.trim_matches(' ').to_owned())
        .collect();
    for profile in &profiles {
        document::check_name("profile", profile)?;
    }
    Ok(profiles)
}

/// The merged configuration of (application, profiles, label); with `index`, a blocking query.
#[utoipa::path(get, path = "/v1/resolve/{application}/{profiles}/{label}",
    params(("application" = String, Path), ("profiles" = String, Path, description = "comma-separated; the last wins"),
        ("label" = String, Path), ResolveQuery),
    responses((status = 200, body = Resolved, headers(("x-msakit-index" = u64)))))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    identity: Identity,
    path: DocPath,
    query: Result<Query<ResolveQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    identity.require(Scope::Read)?;
    let Path((application, profile_segment, label)) = path?;
    let label = document::normalize_label(&label);
    document::check_name("application", &application)?;
    document::check_label(&label)?;
    let profiles = profiles(&profile_segment)?;
    let Query(query) = query?;
    let blocking = blocking_query(
        query.index,
        query.wait.as_deref(),
        state.config.watch.max_wait,
    )?;
    if let Some((index, wait)) = blocking {
        let updates = state.configs.index_updates();
        wait_for_change(updates, index, wait, &state.shutdown, || {
            state.configs.view_index(&application, &profiles, &label)
        })
        .await;
    }
    state.metrics.read();
    let key = format!("resolve\0{application}\0{}\0{label}", profiles.join(","));
    let store_index = state.configs.index();
    let rendered = match state.answers.get(&key, store_index) {
        Some(kept) => kept,
        None => {
            let resolved = state.configs.resolve(&application, &profiles, &label);
            let body = serde_json::to_vec(&resolved).map_err(|e| ApiError::internal(&e))?;
            let rendered = Rendered {
                content_type: "application/json",
                index_header: Some(resolved.index),
                body: body.into(),
            };
            state.answers.keep(key, store_index, rendered.clone());
            rendered
        }
    };
    Ok(rendered.into_response())
}

/// Set an application's JSON Schema; its later writes must satisfy it.
#[utoipa::path(put, path = "/v1/schemas/{application}", params(("application" = String, Path)),
    request_body = Object, responses((status = 204), (status = 422, body = ErrorBody)))]
pub(crate) async fn put_schema(
    State(state): State<AppState>,
    identity: Identity,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    identity.require(Scope::Write)?;
    let Path(application) = path?;
    let Json(schema) =
        body.map_err(|r| ApiError::new(r.status(), "invalid_body", r.body_text()))?;
    state
        .configs
        .set_schema(&application, schema, &identity.name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

type FilePath = Result<Path<(String, String, String, String)>, PathRejection>;

/// Storage a plain-text file (an nginx.conf, say), served by the Spring API at
/// `/{application}/{profile}/{label}/{path}` with placeholders filled.
#[utoipa::path(put, path = "/v1/files/{application}/{profile}/{label}/{path}",
    params(("application" = String, Path), ("profile" = String, Path), ("label" = String, Path), ("path" = String, Path)),
    request_body(content = Option<String>, content_type = "text/plain",
        description = "the file's text; none for an empty file"),
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub(crate) async fn put_file(
    State(state): State<AppState>,
    identity: Identity,
    path: FilePath,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    identity.require(Scope::Write)?;
    let Path((application, profile, label, file)) = path?;
    let key = DocKey::new(&application, &profile, &label)?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("invalid_body", "the file is not UTF-8"))?;
    state
        .configs
        .put_file(&key, &file, text, &identity.name)
        .await?;
    state.metrics.write();
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a plain-text file.
#[utoipa::path(delete, path = "/v1/files/{application}/{profile}/{label}/{path}",
    params(("application" = String, Path), ("profile" = String, Path), ("label" = String, Path), ("path" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_file(
    State(state): State<AppState>,
    identity: Identity,
    path: FilePath,
) -> Result<StatusCode, ApiError> {
    identity.require(Scope::Write)?;
    let Path((application, profile, label, file)) = path?;
    let key = DocKey::new(&application, &profile, &label)?;
    state
        .configs
        .delete_file(&key, &file, &identity.name)
        .await?;
    state.metrics.write();
    Ok(StatusCode::NO_CONTENT)
}

fn cipher(state: &AppState) -> Result<&crate::secrets::Cipher, ApiError> {
    state.configs.cipher().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_secrets_key",
            "this server has no secrets key configured",
        )
    })
}

/// Encrypt a value (text/plain in and out); write `{cipher}<output>` into a document.
pub(crate) async fn encrypt(
    State(state): State<AppState>,
    identity: Identity,
    body: Bytes,
) -> Result<String, ApiError> {
    identity.require(Scope::Write)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_body", "the body is not UTF-8"))?;
    Ok(cipher(&state)?.encrypt(text))
}

/// Decrypt a value (text/plain in and out); a leading `{cipher}` is accepted.
pub(crate) async fn decrypt(
    State(state): State<AppState>,
    identity: Identity,
    body: Bytes,
) -> Result<String, ApiError> {
    identity.require(Scope::Write)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_body", "the body is not UTF-8"))?;
    let text = text.trim();
    cipher(&state)?
        .decrypt(text.strip_prefix(PREFIX).unwrap_or(text))
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "undecryptable",
                e.to_string(),
            )
        })
}

/// The audit log: every write (documents, rollbacks, deletes, schemas, files), who made it and
/// when, oldest first; page with `since`.
#[utoipa::path(get, path = "/v1/audit", params(msakit_api::audit::AuditQuery),
    responses((status = 200, body = msakit_api::audit::AuditPage), (status = 401, body = ErrorBody)))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    identity: Identity,
    query: Result<Query<msakit_api::audit::AuditQuery>, QueryRejection>,
) -> Result<Json<msakit_api::audit::AuditPage>, ApiError> {
    identity.require(Scope::Read)?;
    let Query(query) = query?;
    let entries = state
        .configs
        .audit(
            msakit_server_kit::check_int64("invalid_query", "since", query.since)?,
            query.limit().ok_or_else(|| {
                ApiError::bad_request("invalid_query", "limit must be between 1 and 1000")
            })?,
        )
        .await?;
    let next = entries.last().map_or(query.since, |e| e.seq);
    Ok(Json(msakit_api::audit::AuditPage { entries, next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_profiles_pattern_is_the_check() {
        let pattern = regex::Regex::new(document::PROFILES_PATTERN).unwrap();
        let extra = [
            "dev, prod",
            " dev ,prod ",
            "dev,",
            ",dev",
            "dev,,prod",
            "\tdev",
        ]
        .map(String::from);
        let found = msakit_api::openapi::disagreements(
            "a., _",
            4,
            &extra,
            |s| pattern.is_match(s),
            |s| profiles(s).is_ok(),
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
