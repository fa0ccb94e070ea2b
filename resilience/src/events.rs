//! Subscribable event streams shared by every primitive.
//!
//! Publishing is free when nobody listens: the publisher keeps its own count of live subscribers in
//! an atomic, so the hot path neither builds an event nor touches the channel's lock unless a
//! stream is open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before the oldest are dropped for it.
const CAPACITY: usize = 1024;

/// The sending side, owned by a primitive's shared state.
#[derive(Debug)]
pub(crate) struct EventPublisher<E> {
    sender: broadcast::Sender<E>,
    subscribers: Arc<AtomicUsize>,
}

impl<E: Clone> EventPublisher<E> {
    pub(crate) fn new() -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        Self {
            sender,
            subscribers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether any stream is open.
    #[inline]
    pub(crate) fn is_observed(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Builds and sends an event, but only when a stream is open.
    #[inline]
    pub(crate) fn publish(&self, event: impl FnOnce() -> E) {
        if self.is_observed() {
            // An error only means every receiver went away meanwhile.
            let _ = self.sender.send(event());
        }
    }

    pub(crate) fn subscribe(&self) -> EventStream<E> {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        EventStream {
            receiver: self.sender.subscribe(),
            subscribers: Arc::clone(&self.subscribers),
            missed: 0,
        }
    }
}

/// A stream of a primitive's events, from the moment of subscription.
///
/// A subscriber that falls more than 1024 events behind loses the oldest ones; [`missed`]
/// counts them. Dropping the stream unsubscribes.
///
/// [`missed`]: EventStream::missed
#[derive(Debug)]
pub struct EventStream<E> {
    receiver: broadcast::Receiver<E>,
    subscribers: Arc<AtomicUsize>,
    missed: u64,
}

impl<E: Clone> EventStream<E> {
    /// Waits for the next event; `None` once the primitive and all its clones are gone.
    pub async fn recv(&mut self) -> Option<E> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.missed += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<E> {
        loop {
            match self.receiver.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.missed += n,
                Err(_) => return None,
            }
        }
    }

    /// How many events were dropped because this subscriber fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

impl<E> Drop for EventStream<E> {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
