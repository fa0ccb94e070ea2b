//! Entry points for the fuzz targets in `fuzz/` (not a public API): each takes raw bytes, runs
//! them through the same parsing a request would, and must never panic.

use axum::http::{HeaderMap, HeaderValue};

/// An Eureka instance body as JSON: parsed as `POST /eureka/apps/{app}` would, then rendered.
pub fn eureka_json(bytes: &[u8]) {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let instance = body.get("instance").unwrap_or(&body);
        let _ = crate::eureka::fuzz_parse(instance);
    }
}

/// An Eureka instance body as XML: parsed, then rendered back to XML.
pub fn eureka_xml(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok((root, tree)) = crate::eureka::document::from_xml(text) {
            let _ = crate::eureka::fuzz_parse(&tree);
            let _ = crate::eureka::document::to_xml(&root, &tree);
        }
    }
}

/// A watch request: the query string, then (after a NUL byte) a `Last-Event-ID`.
pub fn watch_request(bytes: &[u8]) {
    let mut parts = bytes.splitn(2, |b| *b == 0);
    let query = parts.next().and_then(|q| std::str::from_utf8(q).ok());
    let mut headers = HeaderMap::new();
    if let Some(id) = parts.next().and_then(|id| HeaderValue::from_bytes(id).ok()) {
        headers.insert("last-event-id", id);
    }
    let _ = crate::http::fuzz_watch_request(query, &headers);
}
