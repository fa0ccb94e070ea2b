//! Wall-clock milliseconds, as the tables store them.

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The time `age` before now, in milliseconds since the epoch; the distant past for an age too
/// long to count (`Duration::MAX` means "forever", never a wrapped negative).
pub(crate) fn ms_ago(age: std::time::Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_age_too_long_to_count_is_the_distant_past() {
        let forever = ms_ago(std::time::Duration::MAX);
        let century = ms_ago(std::time::Duration::from_secs(100 * 365 * 24 * 3600));
        assert!(
            forever < 0 && forever < century,
            "{forever} is before {century}"
        );
        let before = now_ms();
        let hour_ago = ms_ago(std::time::Duration::from_secs(3600));
        let after = now_ms();
        assert!((before - 3_600_000..=after - 3_600_000).contains(&hour_ago));
    }
}
