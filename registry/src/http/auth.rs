//! Token checks: `Authorization: Bearer <token>`, or HTTP Basic with the token as password.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use msakit_server_kit::find_token;

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
    let token = find_token(request.headers(), &auth.tokens, String::as_str).map(|(k, _)| k);
    if needed && token.is_none() {
        return ApiError::unauthorized().into_response();
    }
    let mut request = request;
    request.extensions_mut().insert(crate::audit::Actor(
        token.map_or_else(|| "anonymous".to_owned(), |k| format!("token-{}", k + 1)),
    ));
    next.run(request).await
}
