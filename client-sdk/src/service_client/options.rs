//! How a [`ServiceClient`](super::ServiceClient) balances, retries, times out and ejects.

use std::time::Duration;

use msakit_resilience::CircuitBreakerConfig;
use msakit_resilience::retry::RetryBudgetConfig;

/// How an instance is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balancer {
    /// Two instances at random, the one with the lower peak-EWMA latency × load (Finagle,
    /// Linkerd). Moves load away from slow instances at once.
    #[default]
    PowerOfTwoChoices,
    /// Each instance in turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// At random, in proportion to the instances' registered weights.
    Weighted,
}

/// How calls behave.
#[derive(Debug, Clone)]
pub struct ServiceClientOptions {
    /// How an instance is chosen. Default power of two choices.
    pub balancer: Balancer,
    /// Attempts in all, on different instances when there are. Default 3.
    pub max_attempts: u32,
    /// Time for one attempt. Default 2 s.
    pub attempt_timeout: Duration,
    /// Time for the whole call, attempts and pauses included. Default 5 s.
    pub deadline: Duration,
    /// The per-service breaker. Default: Resilience4j's, with a window of 20 calls.
    pub breaker: CircuitBreakerConfig,
    /// The retry budget shared by every call of this client. Default 20% + 10/s over 10 s.
    pub budget: RetryBudgetConfig,
    /// Failures in a row that eject an instance. Default 5.
    pub eject_after_failures: u32,
    /// The first ejection; each further one doubles, up to 5 min. Default 10 s.
    pub ejection: Duration,
    /// At most this share of a service's instances is ejected at once. Default 0.5.
    pub max_ejected_share: f64,
    /// Extra CAs to trust and a client certificate, for HTTPS. Default: public roots only.
    pub tls: crate::TlsOptions,
}

impl Default for ServiceClientOptions {
    fn default() -> Self {
        Self {
            balancer: Balancer::PowerOfTwoChoices,
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            breaker: CircuitBreakerConfig {
                sliding_window_size: 20,
                minimum_number_of_calls: 20,
                ..Default::default()
            },
            budget: RetryBudgetConfig::default(),
            eject_after_failures: 5,
            ejection: Duration::from_secs(10),
            max_ejected_share: 0.5,
            tls: crate::TlsOptions::default(),
        }
    }
}
