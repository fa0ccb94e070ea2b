//! The sliding windows that hold recent call outcomes: count-based (a ring of the last N calls) and
//! time-based (per-second buckets), both lock-free.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use crate::sliding_counters::SlidingCounters;

/// One recorded call, as stored in a ring slot. Zero means "no call recorded here".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome(u8);

const PRESENT: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

impl Outcome {
    pub(crate) const EMPTY: Outcome = Outcome(0);
    /// A call that neither failed nor was slow.
    const SUCCESS: Outcome = Outcome(PRESENT);

    #[inline]
    pub(crate) fn new(failed: bool, slow: bool) -> Self {
        Outcome(PRESENT | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 })
    }

    /// This outcome's contribution to `[calls, failed, slow, slow_failed]`.
    #[inline]
    fn counts(self) -> [i64; 4] {
        let bit = |b: u8| i64::from(self.0 & b != 0);
        [
            bit(PRESENT),
            bit(FAILED),
            bit(SLOW),
            i64::from(self.0 & (FAILED | SLOW) == FAILED | SLOW),
        ]
    }
}

/// What a window holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WindowCounts {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) slow: u64,
    pub(crate) slow_failed: u64,
}

impl WindowCounts {
    fn from_array([calls, failed, slow, slow_failed]: [u64; 4]) -> Self {
        Self {
            calls,
            failed,
            slow,
            slow_failed,
        }
    }

    /// Failure rate in percent, or `None` below `minimum` calls.
    #[inline]
    pub(crate) fn failure_rate(&self, minimum: u64) -> Option<f32> {
        self.rate(self.failed, minimum)
    }

    /// Slow-call rate in percent, or `None` below `minimum` calls.
    #[inline]
    pub(crate) fn slow_call_rate(&self, minimum: u64) -> Option<f32> {
        self.rate(self.slow, minimum)
    }

    #[inline]
    fn rate(&self, part: u64, minimum: u64) -> Option<f32> {
        (self.calls >= minimum && self.calls > 0)
            .then(|| (part.min(self.calls) as f64 * 100.0 / self.calls as f64) as f32)
    }
}

/// Keeps a value on cache lines of its own, so that writers of neighbouring fields do not slow
/// each other down.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

/// The last `size` calls, as a ring of one-byte slots with running totals beside it.
///
/// Recording swaps the new outcome into the next slot and adjusts the totals by the difference to
/// the outcome it displaced; when both are the same the totals are not touched at all. And when
/// the ring is full of plain successes, recording another success changes nothing wherever it
/// goes, so it writes nothing: a healthy dependency's calls only read three counters, and threads
/// calling it do not contend.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    /// `u64::MAX / len + 1`, for Lemire's division-free `n % len`.
    fastmod: u64,
    /// The next slot, before reduction modulo the ring length. Wrapping at 2³² merely skips
    /// ahead in the ring once: the totals stay exact whatever slot an outcome lands in.
    next: Padded<AtomicU32>,
    totals: Padded<[AtomicI64; 4]>,
}

const CALLS: usize = 0;
const FAILED_CALLS: usize = 1;
const SLOW_CALLS: usize = 2;

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        let size = size.max(1);
        Self {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            fastmod: (u64::MAX / u64::from(size)).wrapping_add(1),
            next: Padded(AtomicU32::new(0)),
            totals: Padded(std::array::from_fn(|_| AtomicI64::new(0))),
        }
    }

    /// `n % len` without a division (Lemire, "Faster remainder by direct computation", 2019).
    #[inline(always)]
    fn slot(&self, n: u32) -> usize {
        let low = self.fastmod.wrapping_mul(u64::from(n));
        ((u128::from(low) * self.slots.len() as u128) >> 64) as usize
    }

    /// Whether every slot holds a plain success.
    #[inline(always)]
    pub(crate) fn all_successes(&self) -> bool {
        let totals = &self.totals.0;
        totals[FAILED_CALLS].load(Ordering::Acquire) == 0
            && totals[SLOW_CALLS].load(Ordering::Acquire) == 0
            && totals[CALLS].load(Ordering::Acquire) == self.slots.len() as i64
    }

    /// Records `outcome`; returns the new counts, or `None` when they did not change (the
    /// outcome replaced an identical one), in which case no threshold can have been crossed.
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome) -> Option<WindowCounts> {
        if outcome == Outcome::SUCCESS && self.all_successes() {
            return None;
        }
        let slot = &self.slots[self.slot(self.next.0.fetch_add(1, Ordering::Relaxed))];
        // Writing the value a slot already holds changes nothing; skip the write. (This slot is
        // ours for this lap of the ring, so nobody else is about to change it either.)
        if slot.load(Ordering::Acquire) == outcome.0 {
            return None;
        }
        let old = Outcome(slot.swap(outcome.0, Ordering::AcqRel));
        if old == outcome {
            return None;
        }
        let (new, old) = (outcome.counts(), old.counts());
        for i in 0..4 {
            let delta = new[i] - old[i];
            if delta != 0 {
                self.totals.0[i].fetch_add(delta, Ordering::AcqRel);
            }
        }
        Some(self.counts())
    }

    #[inline]
    pub(crate) fn counts(&self) -> WindowCounts {
        WindowCounts::from_array(std::array::from_fn(|i| {
            self.totals.0[i].load(Ordering::Acquire).max(0) as u64
        }))
    }

    /// Empties the window. Each slot is drained with a swap, so a concurrent record is either
    /// cleared with its slot or kept with the totals consistent.
    pub(crate) fn reset(&self) {
        for slot in self.slots.iter() {
            let old = Outcome(slot.swap(0, Ordering::AcqRel));
            if old != Outcome::EMPTY {
                for (total, count) in self.totals.0.iter().zip(old.counts()) {
                    if count != 0 {
                        total.fetch_sub(count, Ordering::AcqRel);
                    }
                }
            }
        }
    }
}

/// The calls of the last `size` seconds, in one-second buckets.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    counters: SlidingCounters<4>,
}

impl TimeWindow {
    pub(crate) fn new(seconds: u32) -> Self {
        Self {
            counters: SlidingCounters::new(seconds.max(1) as usize, Duration::from_secs(1)),
        }
    }

    #[inline]
    pub(crate) fn record(&self, outcome: Outcome) -> WindowCounts {
        let now = self.counters.now();
        self.counters.add(now, outcome.counts());
        WindowCounts::from_array(self.counters.totals(now))
    }

    #[inline]
    pub(crate) fn counts(&self) -> WindowCounts {
        WindowCounts::from_array(self.counters.totals(self.counters.now()))
    }

    pub(crate) fn reset(&self) {
        self.counters.reset();
    }
}

/// The closed-state window of either kind.
///
/// There is one per breaker, inside its shared state, so the padded count window's size costs
/// nothing, while boxing it would add a pointer chase to every call.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Records `outcome`; `None` when the counts did not change.
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome) -> Option<WindowCounts> {
        match self {
            Window::Count(w) => w.record(outcome),
            Window::Time(w) => Some(w.record(outcome)),
        }
    }

    pub(crate) fn counts(&self) -> WindowCounts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_forgets_the_oldest_call() {
        let window = CountWindow::new(3);
        window.record(Outcome::new(true, false));
        window.record(Outcome::new(false, true));
        let counts = window.record(Outcome::new(true, true)).unwrap();
        assert_eq!(
            counts,
            WindowCounts {
                calls: 3,
                failed: 2,
                slow: 2,
                slow_failed: 1
            }
        );
        let counts = window.record(Outcome::new(false, false)).unwrap();
        assert_eq!(
            counts,
            WindowCounts {
                calls: 3,
                failed: 1,
                slow: 2,
                slow_failed: 1
            }
        );
        assert_eq!(
            window.record(Outcome::new(false, true)),
            None,
            "same as the one it displaced"
        );
        window.reset();
        assert_eq!(window.counts(), WindowCounts::default());
    }

    #[test]
    fn a_success_into_a_ring_of_successes_writes_nothing() {
        let window = CountWindow::new(2);
        assert!(window.record(Outcome::new(false, false)).is_some());
        assert!(window.record(Outcome::new(false, false)).is_some());
        let next = window.next.0.load(Ordering::Relaxed);
        assert_eq!(window.record(Outcome::new(false, false)), None);
        assert_eq!(
            window.next.0.load(Ordering::Relaxed),
            next,
            "no slot was taken"
        );
        // The ring stays exact: a failure, then a success that displaces the other success (no
        // change), then one that displaces the failure.
        let counts = window.record(Outcome::new(true, false)).unwrap();
        assert_eq!((counts.calls, counts.failed), (2, 1));
        assert_eq!(window.record(Outcome::new(false, false)), None);
        assert_eq!(window.counts().failed, 1);
        let counts = window.record(Outcome::new(false, false)).unwrap();
        assert_eq!((counts.calls, counts.failed), (2, 0));
    }

    #[test]
    fn slot_is_the_remainder() {
        for len in [1u32, 2, 3, 7, 10, 100, 1000, 65_537, 1_000_000] {
            let window = CountWindow::new(len);
            for n in (0..5000u32).chain([u32::MAX - 1, u32::MAX, 1 << 31, 123_456_789]) {
                assert_eq!(window.slot(n), (n % len) as usize, "{n} % {len}");
            }
        }
    }

    #[test]
    fn rates_need_the_minimum_number_of_calls() {
        let counts = WindowCounts {
            calls: 4,
            failed: 1,
            slow: 2,
            slow_failed: 0,
        };
        assert_eq!(counts.failure_rate(5), None);
        assert_eq!(counts.failure_rate(4), Some(25.0));
        assert_eq!(counts.slow_call_rate(1), Some(50.0));
    }
}
