//! Who is calling: a token (`Authorization: Bearer …`, or HTTP Basic with the token as password)
//! names an identity with scopes. Without configured tokens everyone may do everything, as
//! `anonymous`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use msakit_server_kit::find_token;

use super::AppState;
use super::error::ApiError;
use crate::config::Scope;

/// The caller.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Recorded as the author of writes.
    pub(crate) name: String,
    scopes: Vec<Scope>,
}

impl Identity {
    /// Whether the caller may do `scope`.
    pub(crate) fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// `Ok` when the caller may do `scope`; else 401 (no valid token) or 403 (wrong scope).
    pub(crate) fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.may(scope) {
            Ok(())
        } else if self.scopes.is_empty() {
            Err(ApiError::unauthorized())
        } else {
            Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!("this token lacks the {scope:?} scope"),
            ))
        }
    }
}

/// The caller, told by the request's token (an extractor: only handlers that ask work it out).
impl FromRequestParts<AppState> for Identity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let tokens = &state.config.auth.tokens;
        Ok(if tokens.is_empty() {
            Identity {
                name: "anonymous".into(),
                scopes: vec![Scope::Read, Scope::Write],
            }
        } else {
            match find_token(&parts.headers, tokens, |t| &t.token) {
                Some((_, token)) => Identity {
                    name: token.name.clone(),
                    scopes: token.scopes.clone(),
                },
                None => Identity {
                    name: "anonymous".into(),
                    scopes: Vec::new(),
                },
            }
        })
    }
}
