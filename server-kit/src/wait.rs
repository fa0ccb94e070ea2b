//! The parameters of blocking queries: `wait=`, plain seconds or amounts with units as Consul
//! and Go write them (`30s`, `500ms`, `1m30s`, `2h`), and `index=`.

use std::time::Duration;

use crate::ApiError;

/// What `wait` must look like, for the OpenAPI documents: exactly what [`parse_wait`] takes.
pub const WAIT_PATTERN: &str = "^([0-9]+|([0-9]+(ms|s|m|h))+)$";

/// Parses `wait` (default 5 min), capped at `max`.
pub fn parse_wait(wait: Option<&str>, max: Duration) -> Result<Duration, ApiError> {
    let wait = match wait {
        None => Duration::from_secs(300),
        Some(text) => parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_wait",
                format!("wait must look like 30s, 500ms or 1m30s, got {text:?}"),
            )
        })?,
    };
    Ok(wait.min(max))
}

/// Checks a blocking query's `index`: the OpenAPI documents say `int64` (what most clients can
/// hold), so a larger one is refused rather than taken.
pub fn check_index(index: Option<u64>) -> Result<Option<u64>, ApiError> {
    index
        .map(|index| check_int64("invalid_index", "index", index))
        .transpose()
}

/// Checks an unsigned query parameter the OpenAPI documents give as `int64`; `code` is the
/// error's.
pub fn check_int64(code: &'static str, name: &str, value: u64) -> Result<u64, ApiError> {
    if value > i64::MAX as u64 {
        return Err(ApiError::bad_request(
            code,
            format!("{name} must be at most {}, got {value}", i64::MAX),
        ));
    }
    Ok(value)
}

/// A duration matching [`WAIT_PATTERN`]; amounts too large for any clock saturate (the caller
/// caps them anyway).
fn parse(text: &str) -> Option<Duration> {
    // Digits as a number, saturating.
    let amount = |digits: &str| {
        digits
            .parse::<u64>()
            .map_or(u128::from(u64::MAX), u128::from)
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(millis(amount(text) * 1000));
    }
    let mut total: u128 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let value = amount(&rest[..digits]);
        rest = &rest[digits..];
        let (unit_ms, unit_len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        rest = &rest[unit_len..];
        total = total.saturating_add(value * unit_ms);
    }
    Some(millis(total))
}

fn millis(ms: u128) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(600);

    fn wait(text: &str) -> Option<Duration> {
        parse_wait(Some(text), MAX).ok()
    }

    #[test]
    fn takes_seconds_and_go_style_durations() {
        assert_eq!(wait("30"), Some(Duration::from_secs(30)));
        assert_eq!(wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(wait("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(wait("2m"), Some(Duration::from_secs(120)));
        assert_eq!(wait("1h"), Some(MAX), "capped");
        assert_eq!(wait("99999999999999999999999h"), Some(MAX), "saturates");
        assert_eq!(
            parse_wait(None, MAX).unwrap(),
            Duration::from_secs(300),
            "default"
        );
    }

    #[test]
    fn an_index_must_fit_an_int64() {
        assert_eq!(check_index(Some(5)).unwrap(), Some(5));
        assert_eq!(check_index(None).unwrap(), None);
        assert!(check_index(Some(i64::MAX as u64 + 1)).is_err());
    }

    #[test]
    fn the_documented_pattern_is_the_parser() {
        let pattern = regex::Regex::new(WAIT_PATTERN).unwrap();
        let extra = [
            "1m30s",
            "500ms",
            "5µs",
            "٣s",
            "+5",
            "99999999999999999999999h",
        ]
        .map(String::from);
        let found = msakit_api::openapi::disagreements(
            "0ms hx+",
            4,
            &extra,
            |s| pattern.is_match(s),
            |s| parse(s).is_some(),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn refuses_what_the_pattern_refuses() {
        for bad in [
            "", "+5", "-5", "5 s", "5min", "1.5s", "s", "5sx", "soon", "5S",
        ] {
            assert_eq!(wait(bad), None, "{bad:?}");
        }
    }
}
