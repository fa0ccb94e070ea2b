//! Reading a token from a request: `Authorization: Bearer <token>`, HTTP Basic with the token
//! as the password (what Eureka and Spring clients send), or `X-Config-Token` (what Spring's
//! config client sends when `spring.cloud.config.token` is set).

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The token a request presents, if any: from `Authorization`, else from `X-Config-Token` (a
/// client may send Basic credentials meant for a proxy beside its config token).
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    authorization_token(headers).or_else(|| {
        let token = headers.get("x-config-token")?.to_str().ok()?.trim();
        (!token.is_empty()).then(|| token.to_owned())
    })
}

/// The token of the `Authorization` header: Bearer, or the password of Basic.
fn authorization_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_owned());
    }
    let decoded = STANDARD.decode(value.strip_prefix("Basic ")?.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.1.to_owned())
}

/// The configured token `headers` present (Bearer, Basic password or `X-Config-Token`): its
/// position among `tokens`, and the entry. Every entry is compared, each in time independent of
/// where the bytes differ, so neither which token matched nor how much of one did shows in the
/// time taken. `secret` reads an entry's token.
pub fn find_token<'t, T>(
    headers: &HeaderMap,
    tokens: &'t [T],
    secret: impl Fn(&T) -> &str,
) -> Option<(usize, &'t T)> {
    let presented = presented_token(headers)?;
    tokens.iter().enumerate().fold(None, |found, (k, token)| {
        if constant_time_eq(secret(token).as_bytes(), presented.as_bytes()) {
            Some((k, token))
        } else {
            found
        }
    })
}

/// Equality in time independent of where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented_token(&headers).as_deref(), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            "Basic dXNlcjpzM2NyZXQ=".parse().unwrap(),
        );
        assert_eq!(presented_token(&headers).as_deref(), Some("s3cret"));
        headers.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(presented_token(&headers), None);
        let mut spring = HeaderMap::new();
        spring.insert("x-config-token", " t0ken ".parse().unwrap());
        assert_eq!(presented_token(&spring).as_deref(), Some("t0ken"));
        spring.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented_token(&spring).as_deref(), Some("abc"));
        spring.insert(header::AUTHORIZATION, "Negotiate xyz".parse().unwrap());
        assert_eq!(presented_token(&spring).as_deref(), Some("t0ken"));
        assert!(
            constant_time_eq(b"abc", b"abc")
                && !constant_time_eq(b"abc", b"abd")
                && !constant_time_eq(b"a", b"ab")
        );
    }

    #[test]
    fn the_presented_token_is_found_among_the_configured_ones() {
        let tokens = ["first-token".to_owned(), "second-token".to_owned()];
        let mut headers = HeaderMap::new();
        assert_eq!(find_token(&headers, &tokens, String::as_str), None);
        headers.insert(
            header::AUTHORIZATION,
            "Bearer second-token".parse().unwrap(),
        );
        let found = find_token(&headers, &tokens, String::as_str);
        assert_eq!(
            found.map(|(k, t)| (k, t.as_str())),
            Some((1, "second-token"))
        );
        headers.insert(header::AUTHORIZATION, "Bearer second-toke".parse().unwrap());
        assert_eq!(find_token(&headers, &tokens, String::as_str), None);
    }
}
