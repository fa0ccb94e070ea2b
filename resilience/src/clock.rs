//! The clock behind windows, budgets, rate limits and slow-call timing.
//!
//! A precise clock read costs about 24 ns on a VM (a vDSO `clock_gettime` reading the TSC and
//! scaling it); a coarse one about 3 ns (`CLOCK_MONOTONIC_COARSE` and its kin, through
//! `coarsetime`: the kernel's last tick, 1–10 ms old at most). Spans of a second or more are
//! measured on the coarse clock, where one tick is at most 1% of the span; shorter ones on
//! Tokio's.
//!
//! Tests pause Tokio's clock and move it with `advance`; a clock made while Tokio's clock is
//! paused (`start_paused`, or after `pause()`) therefore always reads Tokio's, so every window,
//! budget and rate follows the paused time exactly as sleeps do.

use std::time::Duration;

/// Spans at least this long are measured on the coarse clock.
pub(crate) const COARSE_FROM: Duration = Duration::from_secs(1);

/// A monotonic clock counting nanoseconds from its own origin.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// Tokio's clock: precise, and paused with Tokio's.
    Tokio(tokio::time::Instant),
    /// The kernel's coarse monotonic clock.
    Coarse(coarsetime::Instant),
}

impl Clock {
    /// Tokio's clock, starting now.
    pub(crate) fn precise() -> Self {
        Clock::Tokio(tokio::time::Instant::now())
    }

    /// The cheapest clock fit to measure spans of `span` or more, starting now.
    pub(crate) fn for_spans_of(span: Duration) -> Self {
        if span >= COARSE_FROM && !tokio_time_is_paused() {
            Clock::Coarse(coarsetime::Instant::now_without_cache_update())
        } else {
            Self::precise()
        }
    }

    /// Nanoseconds since this clock's origin.
    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        match self {
            Clock::Tokio(origin) => origin.elapsed().as_nanos() as u64,
            // Not `now()`: that also stores into a process-wide cache, a shared write on every
            // read that two threads would fight over.
            Clock::Coarse(origin) => coarsetime::Instant::now_without_cache_update()
                .duration_since(*origin)
                .as_nanos(),
        }
    }

    /// Whether this is the coarse clock.
    #[cfg(test)]
    pub(crate) fn is_coarse(&self) -> bool {
        matches!(self, Clock::Coarse(_))
    }
}

/// Whether Tokio's clock stands still: paused time does not move between two reads, real time
/// always does at nanosecond resolution. (A platform whose clock is coarser reads as paused, which
/// only costs speed: Tokio's clock is then used, and it is correct either way.)
fn tokio_time_is_paused() -> bool {
    let first = tokio::time::Instant::now();
    first == tokio::time::Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_spans_read_the_coarse_clock_and_short_ones_the_precise_one() {
        assert!(Clock::for_spans_of(Duration::from_secs(1)).is_coarse());
        assert!(Clock::for_spans_of(Duration::from_secs(3600)).is_coarse());
        assert!(!Clock::for_spans_of(Duration::from_millis(999)).is_coarse());
        assert!(!Clock::precise().is_coarse());
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_made_while_tokio_is_paused_follows_tokio() {
        let clock = Clock::for_spans_of(Duration::from_secs(10));
        assert!(!clock.is_coarse());
        let before = clock.nanos();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.nanos() - before, 5_000_000_000);
    }

    #[test]
    fn the_coarse_clock_measures_real_time_within_a_tick() {
        let clock = Clock::for_spans_of(COARSE_FROM);
        let before = clock.nanos();
        let started = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        let real = started.elapsed();
        let measured = Duration::from_nanos(clock.nanos() - before);
        // Each reading is at most one tick (≤ 10 ms) old.
        assert!(
            measured + Duration::from_millis(10) >= real,
            "{measured:?} vs {real:?}"
        );
        assert!(
            measured <= real + Duration::from_millis(10),
            "{measured:?} vs {real:?}"
        );
    }
}
