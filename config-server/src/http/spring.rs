//! Spring Cloud Config's HTTP API over the same store, so existing config clients work
//! unchanged: the Environment document (`/{application}/{profiles}[/{label}]`) and the merged
//! configuration as a file (`/{application}-{profiles}.yml|.yaml|.properties|.json`, optionally
//! under `/{label}/`). `/encrypt` and `/decrypt` are shared with the native API.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Identity;
use super::error::ApiError;
use crate::config::Scope;
use crate::document::{self, DEFAULT_LABEL};
use msakit_server_kit::Rendered;

/// A label as Spring spells it: `(_)` stands for `/`, `master` for `main`.
fn label(raw: &str) -> Result<String, ApiError> {
    let label = document::normalize_label(raw);
    document::check_label(&label)?;
    Ok(label)
}

/// The media type of Spring's Environment with each value's origin, which Spring's config client
/// asks for first.
const ENVIRONMENT_V2: &str = "application/vnd.spring-cloud.config-server.v2+json";

/// Which form of the Environment document a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvironmentForm {
    /// `application/json`: each property's value as it is.
    Plain,
    /// [`ENVIRONMENT_V2`]: each property as `{"value": …, "origin": …}`, as Spring's server
    /// answers that media type.
    WithOrigins,
}

impl EnvironmentForm {
    fn asked(headers: &HeaderMap) -> Self {
        let v2 = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|accept| accept.to_ascii_lowercase().contains(ENVIRONMENT_V2));
        if v2 { Self::WithOrigins } else { Self::Plain }
    }
}

/// A property's value as Spring's server gives it: YAML's `null` is the empty string (what
/// Spring Boot's YAML loader makes of it), so that a `key: ~` blanks out a lower document's value
/// instead of letting it show through.
fn spring_value(value: Value) -> Value {
    if value.is_null() {
        Value::String(String::new())
    } else {
        value
    }
}

/// The Environment document Spring clients read: property sources, highest precedence first.
fn environment(
    state: &AppState,
    identity: &Identity,
    request: EnvironmentRequest<'_>,
) -> Result<Response, ApiError> {
    let EnvironmentRequest {
        application,
        profile_segment,
        label,
        form,
    } = request;
    identity.require(Scope::Read)?;
    // Everything the answer's bytes depend on besides the store (validated when it was kept).
    let key = format!("spring\0{application}\0{profile_segment}\0{label}\0{form:?}");
    let store_index = state.configs.index();
    if let Some(kept) = state.answers.get(&key, store_index) {
        state.metrics.read();
        return Ok(kept.into_response());
    }
    let applications = spring_names(application)?;
    let profiles = spring_profiles(profile_segment)?;
    let (index, sources) = state.configs.sources_view(&applications, &profiles, label);
    if sources.is_empty() && label != DEFAULT_LABEL && !state.configs.has_label(label) {
        // As Spring's git backend answers a branch that does not exist, so that a client given
        // several labels (`label: feature-x,main`) goes on to the next one.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_label",
            format!("no document carries the label {label}"),
        ));
    }
    if sources.is_empty() && !state.config.spring.accept_empty {
        return Err(ApiError::not_found(format!(
            "no configuration for application {application}, profiles {profile_segment}, label {label}"
        )));
    }
    state.metrics.read();
    let property_sources: Vec<Value> = sources
        .into_iter()
        .map(|(source, flat)| {
            let name = if source.profile == document::DEFAULT_PROFILE {
                format!("msakit:{label}/{}.yml", source.application)
            } else {
                format!(
                    "msakit:{label}/{}-{}.yml",
                    source.application, source.profile
                )
            };
            let values: serde_json::Map<String, Value> = flat
                .into_iter()
                .map(|(key, value)| {
                    let value = spring_value(value);
                    let value = match form {
                        EnvironmentForm::Plain => value,
                        EnvironmentForm::WithOrigins => {
                            json!({"value": value, "origin": format!("{name}:{key}")})
                        }
                    };
                    (key, value)
                })
                .collect();
            json!({"name": name, "source": values})
        })
        .collect();
    let content_type = match form {
        EnvironmentForm::Plain => "application/json",
        EnvironmentForm::WithOrigins => ENVIRONMENT_V2,
    };
    let body = json!({
        "name": application,
        "profiles": profiles,
        "label": label,
        "version": index.to_string(),
        "state": null,
        "propertySources": property_sources,
    });
    let rendered = Rendered {
        content_type,
        index_header: None,
        body: Bytes::from(body.to_string()),
    };
    state.answers.keep(key, store_index, rendered.clone());
    Ok(rendered.into_response())
}

/// What `GET /{application}/{profiles}[/{label}]` asks for.
struct EnvironmentRequest<'a> {
    application: &'a str,
    profile_segment: &'a str,
    label: &'a str,
    form: EnvironmentForm,
}

/// `{application}-{profiles}.{ext}` split at the last `-` before the extension.
fn file_name(name: &str) -> Option<(&str, &str, &str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    if !matches!(ext, "yml" | "yaml" | "properties" | "json") {
        return None;
    }
    let (application, profiles) = stem.rsplit_once('-')?;
    Some((application, profiles, ext))
}

/// The merged configuration as a file in the format of its extension.
fn file(
    state: &AppState,
    identity: &Identity,
    label: &str,
    name: &str,
) -> Result<Response, ApiError> {
    identity.require(Scope::Read)?;
    let (application, profile_segment, ext) =
        file_name(name).ok_or_else(|| ApiError::not_found(format!("no such resource {name:?}")))?;
    document::check_name("application", application)?;
    let profiles = spring_profiles(profile_segment)?;
    let resolved = state.configs.resolve(application, &profiles, label);
    state.metrics.read();
    let tree = document::unflatten(&resolved.properties);
    let (content_type, body) = match ext {
        "json" => (
            "application/json",
            serde_json::to_string_pretty(&tree).unwrap_or_default(),
        ),
        "properties" => (
            "text/plain; charset=utf-8",
            resolved
                .properties
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}: {}\n",
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    )
                })
                .collect(),
        ),
        _ => (
            "text/plain; charset=utf-8",
            serde_yaml_ng::to_string(&tree).unwrap_or_default(),
        ),
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// `GET /{one}`: a file under the default label.
pub(crate) async fn one_segment(
    State(state): State<AppState>,
    identity: Identity,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = path?;
    file(&state, &identity, DEFAULT_LABEL, &name)
}

/// `GET /{one}/{two}`: `/{label}/{application}-{profiles}.{ext}` or `/{application}/{profiles}`.
pub(crate) async fn two_segments(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((first, second)) = path?;
    if file_name(&second).is_some() {
        return file(&state, &identity, &label(&first)?, &second);
    }
    let request = EnvironmentRequest {
        application: &first,
        profile_segment: &second,
        label: DEFAULT_LABEL,
        form: EnvironmentForm::asked(&headers),
    };
    environment(&state, &identity, request)
}

/// `GET /{application}/{profiles}/{label}`.
pub(crate) async fn three_segments(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((application, profile_segment, raw_label)) = path?;
    let label = label(&raw_label)?;
    let request = EnvironmentRequest {
        application: &application,
        profile_segment: &profile_segment,
        label: &label,
        form: EnvironmentForm::asked(&headers),
    };
    environment(&state, &identity, request)
}

/// `GET /{application}/{profile}/{label}/{path}`: a stored plain file (or one from the native
/// directory), with
/// `${key}` and `${key:default}` placeholders filled from that application's configuration.
pub(crate) async fn plain_file(
    State(state): State<AppState>,
    identity: Identity,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    identity.require(Scope::Read)?;
    let Path((application, profile_segment, raw_label, file_path)) = path?;
    document::check_name("application", &application)?;
    let profiles = spring_profiles(&profile_segment)?;
    let label = label(&raw_label)?;
    let not_found = || ApiError::not_found(format!("no file {file_path:?} for label {label}"));
    let profile = profiles
        .last()
        .cloned()
        .unwrap_or_else(|| document::DEFAULT_PROFILE.to_owned());
    let key = document::DocKey::new(&application, &profile, &label)?;
    let text = match state.configs.file(&key, &file_path).await? {
        Some(text) => text,
        None => state
            .native
            .as_ref()
            .and_then(|native| native.plain_file(&label, &file_path))
            .ok_or_else(not_found)?,
    };
    let resolved = state.configs.resolve(&application, &profiles, &label);
    state.metrics.read();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        fill_placeholders(&text, &resolved.properties),
    )
        .into_response())
}

/// Replaces `${key}` and `${key:default}`; unknown keys without a default stay as written.
fn fill_placeholders(text: &str, properties: &std::collections::BTreeMap<String, Value>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            rest = &rest[start..];
            break;
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = match inner.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        match (properties.get(name), default) {
            (Some(value), _) => out.push_str(
                &value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned),
            ),
            (None, Some(default)) => out.push_str(default),
            (None, None) => out.push_str(&rest[start..=start + end]),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Anything else under the Spring prefix.
pub(crate) async fn unknown() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// A segment read as a label and as a file name, for the fuzz targets.
pub(crate) fn fuzz_segment(segment: &str) -> bool {
    label(segment).is_ok() | file_name(segment).is_some()
}

/// Placeholders filled in `text`, for the fuzz targets.
pub(crate) fn fuzz_placeholders(
    text: &str,
    properties: &std::collections::BTreeMap<String, Value>,
) -> String {
    fill_placeholders(text, properties)
}

/// The application names of a Spring client's path segment: one, or several comma-separated
/// (`spring.cloud.config.name: orders,shared-db`), the later ones overriding the earlier.
fn spring_names(segment: &str) -> Result<Vec<&str>, ApiError> {
    let names: Vec<&str> = segment.split(',').map(str::trim).collect();
    for name in &names {
        document::check_name("application", name)?;
    }
    Ok(names)
}

/// The profiles of a Spring client's path segment: comma-separated, each trimmed, empty ones
/// skipped (as Spring's own server tolerates `dev,` or `dev, prod`), at least one. The native
/// API's [`super::native::profiles`] is stricter, as its OpenAPI document says.
fn spring_profiles(segment: &str) -> Result<Vec<String>, ApiError> {
    let profiles: Vec<String> = segment
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if profiles.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_name",
            "at least one profile is required",
        ));
    }
    for profile in &profiles {
        document::check_name("profile", profile)?;
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        let properties = [
            ("server.port".to_owned(), json!(8080)),
            ("host".to_owned(), json!("a")),
        ]
        .into();
        assert_eq!(
            fill_placeholders(
                "listen ${server.port}; host ${host}; x ${missing:7}; ${unknown}; ${open",
                &properties
            ),
            "listen 8080; host a; x 7; ${unknown}; ${open"
        );
    }

    #[test]
    fn file_names_split_at_the_last_dash() {
        assert_eq!(file_name("orders-dev.yml"), Some(("orders", "dev", "yml")));
        assert_eq!(
            file_name("my-app-dev,eu.properties"),
            Some(("my-app", "dev,eu", "properties"))
        );
        assert_eq!(file_name("orders.yml"), None);
        assert_eq!(file_name("orders-dev.exe"), None);
    }
}
