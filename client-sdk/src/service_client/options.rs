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

/// How calls behave. Built from [`default`](Self::default) with the setters, one per field
/// (`ServiceClientOptions::default().max_attempts(2).attempt_timeout(…)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
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
        }
    }
}

impl ServiceClientOptions {
    /// How an instance is chosen.
    pub fn balancer(mut self, balancer: Balancer) -> Self {
        self.balancer = balancer;
        self
    }

    /// Attempts in all.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Time for one attempt.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Time for the whole call.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The per-service breaker.
    pub fn breaker(mut self, breaker: CircuitBreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// The retry budget.
    pub fn budget(mut self, budget: RetryBudgetConfig) -> Self {
        self.budget = budget;
        self
    }

    /// Failures in a row that eject an instance.
    pub fn eject_after_failures(mut self, failures: u32) -> Self {
        self.eject_after_failures = failures;
        self
    }

    /// The first ejection's length.
    pub fn ejection(mut self, ejection: Duration) -> Self {
        self.ejection = ejection;
        self
    }

    /// The largest share of a service's instances ejected at once.
    pub fn max_ejected_share(mut self, share: f64) -> Self {
        self.max_ejected_share = share;
        self
    }
}
