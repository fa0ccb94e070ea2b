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
    if needed && !presented_token_valid(&request, &auth.tokens) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

fn presented_token_valid(request: &Request, tokens: &[String]) -> bool {
    let Some(presented) = presented_token(request.headers()) else {
        return false;
    };
    // Compare against every token without stopping early.
    tokens.iter().fold(false, |found, token| {
        found | constant_time_eq(token.as_bytes(), presented.as_bytes())
    })
}
