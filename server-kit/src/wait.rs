//! The parameters of blocking queries: `wait=`, plain seconds or amounts with units as Consul
//! and Go write them (`30s`, `500ms`, `1m30s`, `2h`), and `index=`.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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

/// A blocking query's `index` and `wait` (capped at `max`), checked, `index` first: `Some` when
/// the query blocks, which is when it names an index above 0 (as in Consul, `index=0`, from a
/// client that has seen nothing yet, answers at once).
pub fn blocking_query(
    index: Option<u64>,
    wait: Option<&str>,
    max: Duration,
) -> Result<Option<(u64, Duration)>, ApiError> {
    let index = check_index(index)?;
    let wait = parse_wait(wait, max)?;
    Ok(index.filter(|index| *index > 0).map(|index| (index, wait)))
}

/// Waits until the watched view has changed after `index` (`view_index()` is above it), or
/// `wait` has passed, or `shutdown` fires; `updates` says when the server's index moves. An
/// `index` above the server's own belongs to an earlier run of it (before a restart): it
/// returns at once, so the client starts over from the index it gets back.
pub async fn wait_for_change(
    mut updates: watch::Receiver<u64>,
    index: u64,
    wait: Duration,
    shutdown: &CancellationToken,
    mut view_index: impl FnMut() -> u64,
) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = *updates.borrow_and_update();
        if view_index() > index || index > current {
            return;
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.cancelled() => return,
        }
    }
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

    #[test]
    fn a_query_blocks_only_with_an_index_above_zero() {
        let max = Duration::from_secs(60);
        assert_eq!(blocking_query(None, Some("5s"), max).unwrap(), None);
        assert_eq!(blocking_query(Some(0), None, max).unwrap(), None);
        assert_eq!(
            blocking_query(Some(7), Some("2m"), max).unwrap(),
            Some((7, max))
        );
        assert!(blocking_query(Some(u64::MAX), Some("5s"), max).is_err());
        assert!(blocking_query(Some(7), Some("soon"), max).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_on_a_change_of_the_view_on_its_deadline_or_at_once() {
        let (tx, rx) = watch::channel(5u64);
        let stop = CancellationToken::new();
        let view = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(5));
        let read = {
            let view = std::sync::Arc::clone(&view);
            move || view.load(std::sync::atomic::Ordering::Relaxed)
        };
        // An index from the future (an earlier run): at once.
        let started = tokio::time::Instant::now();
        wait_for_change(rx.clone(), 9, Duration::from_secs(30), &stop, read.clone()).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        // No change: the whole wait.
        wait_for_change(rx.clone(), 5, Duration::from_secs(30), &stop, read.clone()).await;
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // A change elsewhere wakes it but does not end it; one to the view does.
        let waiting = tokio::spawn({
            let (rx, stop, read) = (rx.clone(), stop.clone(), read.clone());
            async move { wait_for_change(rx, 5, Duration::from_secs(30), &stop, read).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send_replace(6);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        view.store(7, std::sync::atomic::Ordering::Relaxed);
        tx.send_replace(7);
        waiting.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(32));
    }
}
