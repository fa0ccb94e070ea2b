//! Entry points for the fuzz targets in `fuzz/` (not a public API): each takes raw bytes, runs
//! them through the same parsing a request would, and must never panic.

use msakit_api::config::Format;

/// A config document in each format: parsed, flattened, checked for `{cipher}` values.
pub fn document(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    for format in [Format::Yaml, Format::Json, Format::Properties] {
        if let Ok(tree) = crate::document::parse(format, text) {
            let flat = crate::document::flatten(&tree);
            let _ = msakit_api::config::unflatten(&flat);
        }
    }
}

/// A `{cipher}` value, opened with a fixed key: must fail cleanly, never panic.
pub fn cipher_value(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let cipher =
        crate::secrets::Cipher::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .expect("a 32-byte key");
    let _ = cipher.decrypt(text);
}

/// Spring Cloud Config path segments, split on `/`: names, labels, profiles and file names as
/// the Spring endpoints read them.
pub fn spring_path(bytes: &[u8]) {
    let Ok(path) = std::str::from_utf8(bytes) else {
        return;
    };
    crate::http::fuzz_spring_path(path);
}
