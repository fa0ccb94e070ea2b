//! Lock-free counters over a sliding window of time, kept as a ring of fixed-width buckets.
//!
//! Used by the time-based circuit-breaker window and by the retry budget. Adding is a handful of
//! atomic operations; the running totals are kept beside the buckets so reading them does not
//! walk the ring. When time moves into a new bucket, the one thread that wins a compare-and-swap
//! on the head subtracts the expired buckets from the totals and clears them; writers into a
//! bucket that is being recycled wait for it (a few nanoseconds) rather than lose their count.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Clock;

/// A ring of buckets, each holding `K` counters, covering `buckets × width` of time.
#[derive(Debug)]
pub(crate) struct SlidingCounters<const K: usize> {
    buckets: Box<[Bucket<K>]>,
    /// Bucket width in nanoseconds.
    width: u64,
    /// Time, read coarsely for windows of a second or more. Ticks are counted from 1 so that an
    /// untouched bucket (tick 0) is never current.
    clock: Clock,
    /// The newest tick whose buckets have been recycled.
    head: AtomicU64,
    /// Sum of all live buckets, per counter. May dip below zero for an instant under races.
    totals: [AtomicI64; K],
}

#[derive(Debug)]
struct Bucket<const K: usize> {
    tick: AtomicU64,
    counts: [AtomicI64; K],
}

impl<const K: usize> SlidingCounters<K> {
    /// A window of `buckets` buckets of `width` each.
    pub(crate) fn new(buckets: usize, width: Duration) -> Self {
        assert!(buckets > 0, "validated by the caller");
        Self {
            buckets: (0..buckets)
                .map(|_| Bucket {
                    tick: AtomicU64::new(0),
                    counts: std::array::from_fn(|_| AtomicI64::new(0)),
                })
                .collect(),
            width: (width.as_nanos() as u64).max(1),
            clock: Clock::for_spans_of(width * buckets as u32),
            head: AtomicU64::new(0),
            totals: std::array::from_fn(|_| AtomicI64::new(0)),
        }
    }

    /// Now, in nanoseconds on this window's clock: the `now` that [`add`](Self::add) and
    /// [`totals`](Self::totals) take.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.nanos()
    }

    fn tick(&self, now: u64) -> u64 {
        now / self.width + 1
    }

    /// Adds `deltas` to the bucket for `now`; returns the tick used, for [`undo`](Self::undo).
    #[inline]
    pub(crate) fn add(&self, now: u64, deltas: [i64; K]) -> u64 {
        let tick = self.tick(now);
        self.advance(tick);
        let bucket = &self.buckets[(tick % self.buckets.len() as u64) as usize];
        let mut spins = 0u32;
        // The thread that claimed this tick may still be clearing the bucket.
        while bucket.tick.load(Ordering::Acquire) < tick {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        for (i, delta) in deltas.into_iter().enumerate() {
            if delta != 0 {
                bucket.counts[i].fetch_add(delta, Ordering::AcqRel);
                self.totals[i].fetch_add(delta, Ordering::AcqRel);
            }
        }
        tick
    }

    /// Takes back an [`add`](Self::add) made at `tick`, unless that bucket has expired since.
    pub(crate) fn undo(&self, tick: u64, deltas: [i64; K]) {
        let bucket = &self.buckets[(tick % self.buckets.len() as u64) as usize];
        if bucket.tick.load(Ordering::Acquire) == tick {
            for (i, delta) in deltas.into_iter().enumerate() {
                if delta != 0 {
                    bucket.counts[i].fetch_sub(delta, Ordering::AcqRel);
                    self.totals[i].fetch_sub(delta, Ordering::AcqRel);
                }
            }
        }
    }

    /// The totals over the window ending at `now`, never negative.
    #[inline]
    pub(crate) fn totals(&self, now: u64) -> [u64; K] {
        self.advance(self.tick(now));
        std::array::from_fn(|i| self.totals[i].load(Ordering::Acquire).max(0) as u64)
    }

    /// Clears every bucket.
    pub(crate) fn reset(&self) {
        for bucket in self.buckets.iter() {
            self.drain(bucket);
        }
    }

    /// Recycles the buckets of every tick after the current head up to `tick`.
    #[inline]
    fn advance(&self, tick: u64) {
        let mut head = self.head.load(Ordering::Acquire);
        while head < tick {
            match self
                .head
                .compare_exchange_weak(head, tick, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let len = self.buckets.len() as u64;
                    let first = (head + 1).max(tick.saturating_sub(len - 1));
                    for t in first..=tick {
                        let bucket = &self.buckets[(t % len) as usize];
                        self.drain(bucket);
                        bucket.tick.store(t, Ordering::Release);
                    }
                    return;
                }
                Err(current) => head = current,
            }
        }
    }

    fn drain(&self, bucket: &Bucket<K>) {
        for (count, total) in bucket.counts.iter().zip(&self.totals) {
            let old = count.swap(0, Ordering::AcqRel);
            if old != 0 {
                total.fetch_sub(old, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_expire_with_their_bucket() {
        let counters = SlidingCounters::<2>::new(3, Duration::from_secs(1));
        let ms = |ms: u64| ms * 1_000_000;
        counters.add(0, [1, 0]);
        counters.add(ms(1500), [1, 1]);
        assert_eq!(counters.totals(ms(1500)), [2, 1]);
        // Tick 1 covers [0s, 1s): it leaves the 3-bucket window at 3s.
        assert_eq!(counters.totals(ms(2999)), [2, 1]);
        assert_eq!(counters.totals(ms(3000)), [1, 1]);
        assert_eq!(counters.totals(ms(60_000)), [0, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn undo_takes_back_a_live_add_only() {
        let counters = SlidingCounters::<1>::new(2, Duration::from_secs(1));
        let now = counters.now();
        let tick = counters.add(now, [5]);
        counters.undo(tick, [2]);
        assert_eq!(counters.totals(now), [3]);
        let later = now + 5_000_000_000;
        assert_eq!(counters.totals(later), [0]);
        counters.undo(tick, [3]);
        assert_eq!(counters.totals(later), [0]);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_clears_everything() {
        let counters = SlidingCounters::<1>::new(4, Duration::from_secs(1));
        let now = counters.now();
        counters.add(now, [7]);
        counters.reset();
        assert_eq!(counters.totals(now), [0]);
        counters.add(now, [1]);
        assert_eq!(counters.totals(now), [1]);
    }
}
