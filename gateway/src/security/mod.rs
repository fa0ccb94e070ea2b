//! Who is calling: a route's API keys and JWT provider, checked before anything is sent on.

pub(crate) mod api_keys;
pub(crate) mod jwt;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use msakit_server_kit::ApiError;

use self::api_keys::ApiKeys;
use self::jwt::{JwtError, JwtProvider};

/// A route's authentication: any of the schemes it has.
#[derive(Debug, Clone)]
pub(crate) struct Authenticator {
    pub(crate) api_keys: Option<Arc<ApiKeys>>,
    pub(crate) jwt: Option<JwtCheck>,
}

/// A route's JWT scheme.
#[derive(Debug, Clone)]
pub(crate) struct JwtCheck {
    pub(crate) provider: Arc<JwtProvider>,
    /// Claim → header passed on.
    pub(crate) claims_to_headers: Vec<(String, HeaderName)>,
}

/// An authenticated caller.
#[derive(Debug, Default)]
pub(crate) struct Caller {
    /// The API key's client, or the token's subject.
    pub(crate) client: Option<String>,
    /// Headers for the target (client id, claims).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

/// The header naming an API key's client to the target.
pub(crate) static CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");

impl Authenticator {
    /// The caller, or the refusal.
    pub(crate) async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        if let Some(keys) = &self.api_keys {
            let presented = api_key.or(bearer.filter(|b| !looks_like_jwt(b) || self.jwt.is_none()));
            if let Some(presented) = presented {
                return match keys.client(presented) {
                    Some(client) => Ok(Caller {
                        client: Some(client.to_owned()),
                        headers: HeaderValue::from_str(client)
                            .map(|v| vec![(CLIENT_ID.clone(), v)])
                            .unwrap_or_default(),
                    }),
                    None => Err(refused("invalid_api_key", "the API key is not valid")),
                };
            }
        }
        if let (Some(jwt), Some(token)) = (&self.jwt, bearer) {
            return jwt.check(token).await;
        }
        Err(refused(
            "unauthorized",
            match (&self.api_keys, &self.jwt) {
                (Some(_), Some(_)) => "an API key (x-api-key) or a bearer token is required",
                (Some(_), None) => "an API key (x-api-key or Authorization: Bearer) is required",
                _ => "a bearer token is required",
            },
        ))
    }
}

impl JwtCheck {
    async fn check(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = self.provider.verify(token).await.map_err(|e| match e {
            JwtError::KeysUnavailable(_) => {
                tracing::warn!(error = %e, "token not checked");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "auth_unavailable",
                    "the token cannot be checked now",
                )
            }
            e => refused("invalid_token", format!("the token is not valid: {e}")),
        })?;
        let mut headers = Vec::with_capacity(self.claims_to_headers.len());
        for (claim, header) in &self.claims_to_headers {
            let text = match claims.get(claim) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                Some(other) => other.to_string(),
            };
            if let Ok(value) = HeaderValue::from_str(&text) {
                headers.push((header.clone(), value));
            }
        }
        Ok(Caller {
            client: claims
                .get("sub")
                .and_then(|s| s.as_str())
                .map(|s| format!("sub:{s}")),
            headers,
        })
    }
}

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

/// 401 with a bearer challenge.
fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}
