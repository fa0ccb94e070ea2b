//! Middleware that caps how many calls run at once, so one slow dependency cannot take every
//! task, connection or thread of its caller.
//!
//! With `max_wait` zero (the default) nobody ever waits, so the bulkhead is one atomic count:
//! taking a slot is a compare-and-swap and freeing it an add. With `max_wait` above zero the slots
//! are a `tokio::sync::Semaphore`, so callers that must wait queue fairly.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::admission::{Admission, AdmissionLayer, AdmissionService, Admit};
use crate::events::EventPublisher;
use crate::{BoxError, Error, EventStream, InvalidConfig};

/// The bulkhead as a `tower::Layer`; the excess fails with a boxed [`BulkheadFull`].
pub type BulkheadLayer = AdmissionLayer<Bulkhead>;

/// A service behind a bulkhead; see [`BulkheadLayer`].
pub type BulkheadService<S> = AdmissionService<S, Bulkhead>;

/// Bulkhead configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Calls allowed to run at once. Default 25.
    pub max_concurrent_calls: u32,
    /// How long a call may wait for a slot; zero rejects at once. Default 0.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 25,
            max_wait: Duration::ZERO,
        }
    }
}

/// The semaphore's own limit on permits.
const MAX_CONCURRENT: u32 = 1 << 28;

impl BulkheadConfig {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        crate::invalid_config::check_positive(
            "max_concurrent_calls",
            self.max_concurrent_calls.into(),
        )?;
        if self.max_concurrent_calls > MAX_CONCURRENT {
            return Err(InvalidConfig::new(
                "max_concurrent_calls",
                format!("must be at most {MAX_CONCURRENT}"),
            ));
        }
        Ok(())
    }
}

/// The bulkhead was full and the call could not wait for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadFull {
    /// The bulkhead's name.
    pub name: Arc<str>,
    /// Its capacity.
    pub max_concurrent_calls: u32,
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bulkhead '{}' is full ({} concurrent calls) and does not permit further calls",
            self.name, self.max_concurrent_calls
        )
    }
}

impl std::error::Error for BulkheadFull {}

/// A bulkhead. Cheap to clone; clones share the slots.
#[derive(Debug, Clone)]
pub struct Bulkhead {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    config: BulkheadConfig,
    slots: Slots,
    permitted: AtomicU64,
    rejected: AtomicU64,
    events: EventPublisher<BulkheadEvent>,
}

/// Where the slots are kept; see the module documentation.
#[derive(Debug)]
enum Slots {
    /// Free slots, when nobody may wait.
    Counted(AtomicU32),
    /// A fair queue, when callers may wait.
    Queued(Arc<Semaphore>),
}

impl Slots {
    fn for_config(config: &BulkheadConfig) -> Self {
        if config.max_wait.is_zero() {
            Slots::Counted(AtomicU32::new(config.max_concurrent_calls))
        } else {
            Slots::Queued(Arc::new(Semaphore::new(
                config.max_concurrent_calls as usize,
            )))
        }
    }

    fn available(&self) -> u32 {
        match self {
            Slots::Counted(free) => free.load(Ordering::Relaxed),
            Slots::Queued(semaphore) => semaphore.available_permits() as u32,
        }
    }
}

/// Takes one of the `free` slots, if any is left.
#[inline]
fn take(free: &AtomicU32) -> bool {
    free.fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// One thing that happened in a bulkhead.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkheadEvent {
    /// The bulkhead's name.
    pub bulkhead: Arc<str>,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: BulkheadEventKind,
}

/// The kinds of bulkhead events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadEventKind {
    /// A call got a slot.
    Permitted,
    /// A call was rejected.
    Rejected,
}

/// A snapshot of the bulkhead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkheadMetrics {
    /// The bulkhead's name.
    pub name: String,
    /// Free slots right now.
    pub available_concurrent_calls: u32,
    /// Capacity.
    pub max_allowed_concurrent_calls: u32,
    /// Calls that got a slot since creation.
    pub permitted_calls: u64,
    /// Calls rejected since creation.
    pub rejected_calls: u64,
}

/// A slot in a bulkhead, freed on drop.
#[derive(Debug)]
pub struct BulkheadPermit<'a> {
    _slot: Slot<'a>,
}

#[derive(Debug)]
#[expect(dead_code, reason = "a slot is held for its drop, never read")]
enum Slot<'a> {
    Counted(CountedSlot<'a>),
    Queued(SemaphorePermit<'a>),
}

/// A counted slot; dropping it frees it.
#[derive(Debug)]
struct CountedSlot<'a>(&'a AtomicU32);

impl Drop for CountedSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// A slot in a bulkhead that owns a handle to it (for services), freed on drop.
#[derive(Debug)]
pub struct OwnedBulkheadPermit {
    _slot: OwnedSlot,
}

#[derive(Debug)]
#[expect(dead_code, reason = "a slot is held for its drop, never read")]
enum OwnedSlot {
    Counted(OwnedCountedSlot),
    Queued(OwnedSemaphorePermit),
}

/// A counted slot holding its bulkhead; dropping it frees it.
#[derive(Debug)]
struct OwnedCountedSlot(Arc<Shared>);

impl Drop for OwnedCountedSlot {
    fn drop(&mut self) {
        if let Slots::Counted(free) = &self.0.slots {
            free.fetch_add(1, Ordering::Release);
        }
    }
}

impl Bulkhead {
    /// A bulkhead named `name`.
    pub fn new(name: impl Into<Arc<str>>, config: BulkheadConfig) -> Result<Self, InvalidConfig> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.into(),
                slots: Slots::for_config(&config),
                config,
                permitted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                events: EventPublisher::new(),
            }),
        })
    }

    /// Runs `f` in a slot, waiting up to `max_wait` for one.
    pub async fn call<F, Fut, T, E>(&self, f: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let _permit = self.acquire().await?;
        f().await.map_err(Error::Inner)
    }

    /// Takes a slot, waiting up to `max_wait` for one.
    pub async fn acquire(&self) -> Result<BulkheadPermit<'_>, BulkheadFull> {
        let slot = match &self.shared.slots {
            Slots::Counted(free) => take(free).then(|| Slot::Counted(CountedSlot(free))),
            Slots::Queued(semaphore) => match semaphore.try_acquire() {
                Ok(permit) => Some(Slot::Queued(permit)),
                // Waiting is the rare path: its futures live on the heap, so that the futures
                // of every caller (and of a whole policy) stay small.
                Err(_) => Box::pin(tokio::time::timeout(
                    self.shared.config.max_wait,
                    semaphore.acquire(),
                ))
                .await
                .ok()
                .and_then(Result::ok)
                .map(Slot::Queued),
            },
        };
        self.shared
            .admit(slot)
            .map(|slot| BulkheadPermit { _slot: slot })
    }

    /// Takes a free slot, with a permit that owns a handle to the bulkhead; never waits.
    fn try_acquire_owned(&self) -> Option<OwnedSlot> {
        match &self.shared.slots {
            Slots::Counted(free) => {
                take(free).then(|| OwnedSlot::Counted(OwnedCountedSlot(Arc::clone(&self.shared))))
            }
            Slots::Queued(semaphore) => Arc::clone(semaphore)
                .try_acquire_owned()
                .ok()
                .map(OwnedSlot::Queued),
        }
    }

    /// Takes a slot, waiting up to `max_wait`, with a permit that owns a handle to the bulkhead.
    async fn acquire_owned(&self) -> Result<OwnedBulkheadPermit, BulkheadFull> {
        let slot = match &self.shared.slots {
            Slots::Counted(_) => self.try_acquire_owned(),
            Slots::Queued(semaphore) => tokio::time::timeout(
                self.shared.config.max_wait,
                Arc::clone(semaphore).acquire_owned(),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(OwnedSlot::Queued),
        };
        self.shared
            .admit(slot)
            .map(|slot| OwnedBulkheadPermit { _slot: slot })
    }

    /// This bulkhead as a `tower::Layer`.
    pub fn layer(&self) -> BulkheadLayer {
        BulkheadLayer::new(self.clone())
    }

    /// A snapshot of slots and counters.
    pub fn metrics(&self) -> BulkheadMetrics {
        let s = &self.shared;
        BulkheadMetrics {
            name: s.name.to_string(),
            available_concurrent_calls: s.slots.available(),
            max_allowed_concurrent_calls: s.config.max_concurrent_calls,
            permitted_calls: s.permitted.load(Ordering::Relaxed),
            rejected_calls: s.rejected.load(Ordering::Relaxed),
        }
    }

    /// Subscribes to this bulkhead's events.
    pub fn events(&self) -> EventStream<BulkheadEvent> {
        self.shared.events.subscribe()
    }
}

impl Admit for Bulkhead {
    type Permit = OwnedBulkheadPermit;

    fn try_admit(&self) -> Admission<OwnedBulkheadPermit> {
        let free = self.try_acquire_owned();
        if free.is_none() && !self.shared.config.max_wait.is_zero() {
            return Admission::Wait;
        }
        match self.shared.admit(free) {
            Ok(slot) => Admission::Now(OwnedBulkheadPermit { _slot: slot }),
            Err(full) => Admission::Rejected(Box::new(full)),
        }
    }

    async fn wait(&self) -> Result<OwnedBulkheadPermit, BoxError> {
        Ok(self.acquire_owned().await?)
    }
}

impl Shared {
    /// Counts the outcome of an acquisition and turns a missing permit into the rejection.
    fn admit<P>(&self, permit: Option<P>) -> Result<P, BulkheadFull> {
        let (counter, kind) = match permit {
            Some(_) => (&self.permitted, BulkheadEventKind::Permitted),
            None => (&self.rejected, BulkheadEventKind::Rejected),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.events.publish(|| BulkheadEvent {
            bulkhead: Arc::clone(&self.name),
            at: Instant::now(),
            kind,
        });
        permit.ok_or_else(|| BulkheadFull {
            name: Arc::clone(&self.name),
            max_concurrent_calls: self.config.max_concurrent_calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rejects_at_once_when_full_without_wait() {
        let bulkhead = Bulkhead::new(
            "b",
            BulkheadConfig {
                max_concurrent_calls: 1,
                max_wait: Duration::ZERO,
            },
        )
        .unwrap();
        let held = bulkhead.acquire().await.unwrap();
        let err = bulkhead.acquire().await.unwrap_err();
        assert_eq!(err.max_concurrent_calls, 1);
        drop(held);
        bulkhead.acquire().await.unwrap();
        let m = bulkhead.metrics();
        assert_eq!((m.permitted_calls, m.rejected_calls), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_up_to_max_wait() {
        let bulkhead = Bulkhead::new(
            "b",
            BulkheadConfig {
                max_concurrent_calls: 1,
                max_wait: Duration::from_millis(100),
            },
        )
        .unwrap();
        let held = bulkhead.acquire().await.unwrap();
        let start = Instant::now();
        assert!(bulkhead.acquire().await.is_err());
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        let releaser = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(held);
        };
        let (_, got) = tokio::join!(releaser, bulkhead.acquire());
        assert!(got.is_ok());
    }
}
