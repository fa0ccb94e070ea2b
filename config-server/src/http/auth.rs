//! Who is calling: a token (`Authorization: Bearer …`, or HTTP Basic with the token as password)
//! names an identity with scopes. Without configured tokens everyone may do everything, as
//! `anonymous`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use msakit_server_kit::find_token;

use super::AppState;
use super::error::ApiError;
use crate::config::Scope;

/// The caller, in each request's extensions.
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

/// Attaches the caller's [`Identity`] to the request.
pub(crate) async fn identify(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let tokens = &state.config.auth.tokens;
    let identity = if tokens.is_empty() {
        Identity {
            name: "anonymous".into(),
            scopes: vec![Scope::Read, Scope::Write],
        }
    } else {
        match find_token(request.headers(), tokens, |t| &t.token) {
            Some((_, token)) => Identity {
                name: token.name.clone(),
                scopes: token.scopes.clone(),
            },
            None => Identity {
                name: "anonymous".into(),
                scopes: Vec::new(),
            },
        }
    };
    request.extensions_mut().insert(identity);
    next.run(request).await
}
