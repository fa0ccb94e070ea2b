//! Rate limits: a token bucket (GCRA) per key, counted here with `governor`, or in Redis when
//! shared by several gateways — the same algorithm in one Lua script run atomically by Redis on
//! Redis's own clock, so gateways on different machines agree. While Redis does not answer
//! (within [`REDIS_TIMEOUT`]), counting falls back to this gateway's own limiter.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::routes::spec::RateLimitSpec;

/// The longest wait for Redis before counting locally.
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);

/// GCRA: `KEYS[1]` holds the theoretical arrival time (µs, Redis's clock); `ARGV[1]` the
/// emission interval, `ARGV[2]` the tolerance (interval × burst). Answers 0 when allowed,
/// else the µs until it would be.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > tolerance then
  return math.ceil(next_tat - now - tolerance)
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
";

/// A request over its limit: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverLimit {
    pub(crate) retry_after: Duration,
}

/// Redis, shared by every route limiter of a gateway: connected in the background, replaced
/// when it fails.
#[derive(Clone)]
pub(crate) struct SharedCounters {
    connection: Arc<RwLock<Option<redis::aio::ConnectionManager>>>,
    script: Arc<redis::Script>,
    prefix: Arc<str>,
    /// Requests counted locally because Redis did not answer.
    fallbacks: Arc<AtomicU64>,
}

impl std::fmt::Debug for SharedCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCounters")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedCounters {
    /// Connects to `url` in the background (retrying until it answers), keys under `prefix`.
    pub(crate) fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let shared = Self {
            connection: Arc::default(),
            script: Arc::new(redis::Script::new(GCRA)),
            prefix: prefix.into(),
            fallbacks: Arc::default(),
        };
        let slot = Arc::clone(&shared.connection);
        tokio::spawn(async move {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(REDIS_TIMEOUT));
            let mut pause = Duration::from_millis(100);
            loop {
                match redis::aio::ConnectionManager::new_with_config(client.clone(), config.clone())
                    .await
                {
                    Ok(manager) => {
                        tracing::info!("rate-limit counters shared through Redis");
                        *slot.write().unwrap_or_else(|e| e.into_inner()) = Some(manager);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis not reachable yet; counting locally");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Ok(shared)
    }

    /// Requests counted locally so far because Redis did not answer.
    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Whether Redis is connected (it may still fail to answer).
    pub(crate) fn connected(&self) -> bool {
        self.connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Counts one request against `key`: `Ok(None)` allowed, `Ok(Some(_))` over, `Err` when
    /// Redis did not answer.
    async fn check(&self, key: &str, quota: &QuotaSpec) -> Result<Option<OverLimit>, String> {
        let Some(mut connection) = self
            .connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return Err("not connected".into());
        };
        let mut invocation = self.script.key(format!("{}:{key}", self.prefix));
        invocation
            .arg(quota.interval_us)
            .arg(quota.interval_us.saturating_mul(u64::from(quota.burst)));
        let wait: u64 =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        Ok((wait > 0).then(|| OverLimit {
            retry_after: Duration::from_micros(wait),
        }))
    }
}

/// The quota as Redis's script takes it.
#[derive(Debug, Clone, Copy)]
struct QuotaSpec {
    interval_us: u64,
    burst: u32,
}

/// One route's limiter.
pub(crate) struct RouteLimiter {
    spec: RateLimitSpec,
    local: DefaultKeyedRateLimiter<String>,
    quota: QuotaSpec,
    shared: Option<SharedCounters>,
    /// `route:rate/burst`, so a changed quota starts afresh in Redis.
    scope: String,
}

impl std::fmt::Debug for RouteLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLimiter")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl RouteLimiter {
    pub(crate) fn new(
        route: &str,
        spec: &RateLimitSpec,
        shared: Option<&SharedCounters>,
    ) -> Result<Self, String> {
        let requests =
            NonZeroU32::new(spec.requests).ok_or("rate_limit.requests must be at least 1")?;
        let burst = NonZeroU32::new(spec.burst.unwrap_or(spec.requests))
            .ok_or("rate_limit.burst must be at least 1")?;
        if spec.period > Duration::from_secs(366 * 86_400) {
            return Err("rate_limit.period is at most a year".into());
        }
        // One request's share of the period.
        let interval = spec.period / requests.get();
        if interval.is_zero() {
            return Err("rate_limit: more than one request per nanosecond".into());
        }
        let quota = Quota::with_period(interval)
            .ok_or("rate_limit.period must be above zero")?
            .allow_burst(burst);
        Ok(Self {
            spec: spec.clone(),
            local: RateLimiter::keyed(quota),
            quota: QuotaSpec {
                interval_us: u64::try_from(interval.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
                burst: burst.get(),
            },
            shared: shared.filter(|_| spec.shared).cloned(),
            scope: format!(
                "{route}:{}/{}:{}",
                requests,
                humantime::format_duration(spec.period),
                burst
            ),
        })
    }

    /// What it was built from (a reload keeps the limiter, and its counts, when unchanged).
    pub(crate) fn spec(&self) -> &RateLimitSpec {
        &self.spec
    }

    /// Counts a request of `key`.
    pub(crate) async fn check(&self, key: &str) -> Result<(), OverLimit> {
        if let Some(shared) = &self.shared {
            match shared
                .check(&format!("{}:{key}", self.scope), &self.quota)
                .await
            {
                Ok(None) => return Ok(()),
                Ok(Some(over)) => return Err(over),
                Err(e) => {
                    shared.fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "Redis did not count; counting locally");
                }
            }
        }
        self.local
            .check_key(&key.to_owned())
            .map_err(|not_until| OverLimit {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Forgets keys whose buckets are full again (memory bound).
    pub(crate) fn forget_idle(&self) {
        self.local.retain_recent();
        self.local.shrink_to_fit();
    }
}
