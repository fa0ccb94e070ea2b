//! Reconnect pacing shared by the SDK's background tasks: exponential with full jitter, so a
//! fleet that lost the registry together does not come back in lockstep.

use std::time::Duration;

/// Delays of 100 ms doubling to `max`, each drawn uniformly below its bound.
#[derive(Debug, Clone)]
pub(crate) struct Reconnect {
    attempt: u32,
    max: Duration,
}

impl Reconnect {
    pub(crate) fn new(max: Duration) -> Self {
        Self { attempt: 0, max }
    }

    /// The next wait.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let bound = Duration::from_millis(100)
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_nanos(fastrand::u64(
            bound.as_nanos() as u64 / 2..=bound.as_nanos() as u64,
        ))
    }

    /// Back to the shortest wait after a success.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}
