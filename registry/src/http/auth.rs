//! Token checks: `Authorization: Bearer <token>`, or HTTP Basic with the token as password.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

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
    let Some(value) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let presented = if let Some(token) = value.strip_prefix("Bearer ") {
        token.trim().as_bytes().to_vec()
    } else if let Some(encoded) = value.strip_prefix("Basic ") {
        match STANDARD.decode(encoded.trim()) {
            Ok(decoded) => match decoded.iter().position(|&b| b == b':') {
                Some(colon) => decoded[colon + 1..].to_vec(),
                None => return false,
            },
            Err(_) => return false,
        }
    } else {
        return false;
    };
    // Compare against every token without stopping early, in time independent of where the
    // bytes differ.
    tokens.iter().fold(false, |found, token| {
        found | constant_time_eq(token.as_bytes(), &presented)
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
