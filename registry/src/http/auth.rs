//! Token checks: `Authorization: Bearer <token>`, or HTTP Basic with the token as password.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use msakit_server_kit::{constant_time_eq, presented_token};

use super::AppState;
use super::error::ApiError;

/// Lets a request through when auth is off, when it carries a valid token, or when it is a read
/// and reads are not protected.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let auth = &state.config.auth;
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    let needed = !auth.tokens.is_empty() && (!is_read || auth.protect_reads);
    let token = presented_token_index(&request, &auth.tokens);
    if needed && token.is_none() {
        return ApiError::unauthorized().into_response();
    }
    let mut request = request;
    request.extensions_mut().insert(crate::audit::Actor(
        token.map_or_else(|| "anonymous".to_owned(), |k| format!("token-{}", k + 1)),
    ));
    next.run(request).await
}

/// The position of the presented token among the configured ones, if it is one of them.
fn presented_token_index(request: &Request, tokens: &[String]) -> Option<usize> {
    let presented = presented_token(request.headers())?;
    // Compare against every token without stopping early.
    tokens.iter().enumerate().fold(None, |found, (k, token)| {
        if constant_time_eq(token.as_bytes(), presented.as_bytes()) {
            Some(k)
        } else {
            found
        }
    })
}
