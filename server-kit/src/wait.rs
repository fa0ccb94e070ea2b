//! The `wait=` of blocking queries: `30s`, `1m`, `500ms`, or plain seconds.

use std::time::Duration;

use crate::ApiError;

/// Parses `wait` (default 5 min), capped at `max`.
pub fn parse_wait(wait: Option<&str>, max: Duration) -> Result<Duration, ApiError> {
    let wait = match wait {
        None => Duration::from_secs(300),
        Some(text) => match text.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => humantime::parse_duration(text).map_err(|_| {
                ApiError::bad_request(
                    "invalid_wait",
                    format!("wait must look like 30s or 500ms, got {text:?}"),
                )
            })?,
        },
    };
    Ok(wait.min(max))
}
