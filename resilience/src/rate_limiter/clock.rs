//! The limiter's clock for `governor`: the crate's [`Clock`](crate::clock::Clock), coarse for
//! periods of a second or more and Tokio's otherwise, so rate limits follow
//! `tokio::time::pause()` in tests exactly as sleeps do.

use governor::nanos::Nanos;

use crate::clock::Clock;

/// A [`Clock`] in the shape `governor` measures with: instants are nanoseconds since the clock's
/// origin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimiterClock(pub(crate) Clock);

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        Nanos::from(self.0.nanos())
    }
}
