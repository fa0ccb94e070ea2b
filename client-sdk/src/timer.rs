//! Timeouts for many short calls without a system call each: one shared timer thread.
//!
//! tokio's timer wakes its runtime's driver (a write to an eventfd, then an extra `epoll_wait`)
//! whenever a timer is registered earlier than every other pending one: for calls made one after
//! another under the same limit, every other call. On a VM each of those system calls costs about
//! a microsecond, which is more than the SDK's whole logic per call (`BENCHMARKS.md`).
//!
//! Here every deadline goes into one table shared by the process, and one thread sleeps until
//! the earliest deadline it knows of, then wakes the futures whose deadline has passed. A new
//! deadline no earlier than the one the thread sleeps towards — the common case: the same limit,
//! a later start — only takes the table's lock; an earlier one wakes the thread (one futex call)
//! to sleep less. A future that finishes takes its deadline out of the table; the thread does not
//! wake for it, and at worst wakes once for nothing at the deadline it was sleeping towards.
//!
//! The thread belongs to no runtime, so a timeout works on any executor, and from any thread.
//! Should the thread fail to start, timeouts fall back to tokio's timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use slab::Slab;

/// The error of a [`Timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed;

/// Cuts `future` off `limit` after now. See the [module documentation](self).
pub fn timeout<F: Future>(limit: Duration, future: F) -> Timeout<F> {
    let now = Instant::now();
    // A limit past what an `Instant` can hold is as good as none: thirty years.
    let deadline = now
        .checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
    timeout_at(deadline, future)
}

/// Cuts `future` off at `deadline`. See the [module documentation](self).
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        inner: future,
        deadline,
        registered: None,
        fallback: None,
    }
}

pin_project! {
    /// A future cut off at a deadline: `Ok` with the future's output when it finishes first,
    /// [`Elapsed`] otherwise. Made by [`timeout`] and [`timeout_at`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Timeout<F> {
        #[pin]
        inner: F,
        deadline: Instant,
        // The entry in the shared table, once the future has waited.
        registered: Option<Registered>,
        // tokio's timer, only when the shared thread could not start.
        fallback: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F> std::fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeout")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            // Out of the table now rather than when the future is dropped.
            *this.registered = None;
            return Poll::Ready(Ok(output));
        }
        if let Some(sleep) = this.fallback {
            return sleep.as_mut().poll(cx).map(|()| Err(Elapsed));
        }
        match this.registered.as_mut() {
            // Woken again: by the inner future's progress or by the timer thread.
            Some(registered) => {
                if Instant::now() >= *this.deadline || registered.fired(cx.waker()) {
                    *this.registered = None;
                    return Poll::Ready(Err(Elapsed));
                }
            }
            // The first wait: no clock read, only an entry in the table.
            None => match Registered::new(*this.deadline, cx.waker()) {
                Some(registered) => *this.registered = Some(registered),
                None => {
                    let sleep = this.fallback.insert(fallback(*this.deadline));
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(Elapsed));
                    }
                }
            },
        }
        Poll::Pending
    }
}

/// tokio's timer for `deadline`, when the shared thread could not start.
#[cold]
#[inline(never)]
fn fallback(deadline: Instant) -> Pin<Box<tokio::time::Sleep>> {
    Box::pin(tokio::time::sleep_until(deadline.into()))
}

/// A deadline in the shared table; taken out when dropped.
struct Registered {
    timer: &'static Timer,
    key: usize,
    // The waker in the table, to tell whether a later poll brings another.
    waker: Waker,
}

impl Registered {
    /// Puts `deadline` in the table, waking the thread if it sleeps towards a later one;
    /// `None` if the thread could not start.
    fn new(deadline: Instant, waker: &Waker) -> Option<Registered> {
        let timer = Timer::shared()?;
        let mut table = timer.lock();
        let key = table.entries.insert(Entry {
            deadline,
            waker: Some(waker.clone()),
        });
        if table.armed.is_none_or(|armed| deadline < armed) {
            table.armed = Some(deadline);
            drop(table);
            timer.rearm.notify_one();
        }
        Some(Registered {
            timer,
            key,
            waker: waker.clone(),
        })
    }

    /// Whether the thread has fired this deadline (it takes the waker when it does: the clock
    /// it read may be a hair ahead of this poll's); if not, keeps the table's waker the one of
    /// the task polling now. Only a future polled again while still waiting gets here.
    fn fired(&mut self, waker: &Waker) -> bool {
        let mut table = self.timer.lock();
        let Some(entry) = table.entries.get_mut(self.key) else {
            return true;
        };
        let Some(current) = &mut entry.waker else {
            return true;
        };
        if self.waker.will_wake(waker) {
            return false;
        }
        // The old wakers are dropped outside the lock: dropping one may run a task's code.
        let old = std::mem::replace(current, waker.clone());
        drop(table);
        drop(old);
        self.waker = waker.clone();
        false
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Taken out under the lock, dropped (with its waker) after it.
        let entry = self.timer.lock().entries.try_remove(self.key);
        drop(entry);
    }
}

struct Entry {
    deadline: Instant,
    // Taken by the thread when it wakes the future.
    waker: Option<Waker>,
}

/// The shared table and its thread's alarm clock.
struct Timer {
    table: Mutex<Table>,
    rearm: Condvar,
}

struct Table {
    entries: Slab<Entry>,
    // What the thread sleeps towards; `None` when it waits for a first entry.
    armed: Option<Instant>,
}

impl Timer {
    /// The process's timer, its thread started on first use; `None` if it could not start.
    fn shared() -> Option<&'static Timer> {
        static TIMER: OnceLock<Timer> = OnceLock::new();
        static STARTED: OnceLock<bool> = OnceLock::new();
        let timer = TIMER.get_or_init(|| Timer {
            table: Mutex::new(Table {
                entries: Slab::new(),
                armed: None,
            }),
            rearm: Condvar::new(),
        });
        let started = STARTED.get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("msakit-timer".into())
                .spawn(|| timer.run());
            if let Err(error) = &spawned {
                tracing::error!(%error, "could not start the timer thread; using tokio's timer");
            }
            spawned.is_ok()
        });
        started.then_some(timer)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: wake what has expired, sleep until the earliest deadline left, repeat.
    fn run(&self) {
        let mut expired: Vec<Waker> = Vec::new();
        let mut table = self.lock();
        loop {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for (_, entry) in table.entries.iter_mut() {
                if entry.deadline <= now {
                    expired.extend(entry.waker.take());
                } else if entry.waker.is_some() {
                    next = Some(next.map_or(entry.deadline, |n| n.min(entry.deadline)));
                }
            }
            table.armed = next;
            if !expired.is_empty() {
                // Woken outside the lock: a waker may run code that polls a `Timeout`.
                drop(table);
                for waker in expired.drain(..) {
                    // A waker that panics must not stop every other timeout for good.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()))
                        .is_err()
                    {
                        tracing::error!("a waker panicked in the timer thread");
                    }
                }
                table = self.lock();
                continue;
            }
            table = match next {
                None => self.rearm.wait(table).unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    self.rearm
                        .wait_timeout(table, at.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_future_that_finishes_first_is_not_cut_off() {
        let answer = timeout(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        })
        .await;
        assert_eq!(answer, Ok(7));
    }

    #[tokio::test]
    async fn a_future_that_hangs_is_cut_off_at_its_deadline() {
        let started = Instant::now();
        let answer = timeout(Duration::from_millis(50), std::future::pending::<()>()).await;
        assert_eq!(answer, Err(Elapsed));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn an_earlier_deadline_wakes_a_thread_sleeping_towards_a_later_one() {
        // A long deadline first, so the thread sleeps towards it...
        let long = tokio::spawn(timeout(
            Duration::from_secs(30),
            std::future::pending::<()>(),
        ));
        tokio::task::yield_now().await;
        // ...then a short one must still end on time (well before the long one).
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            timeout(Duration::from_millis(20), std::future::pending::<()>()),
        )
        .await;
        assert_eq!(answer, Ok(Err(Elapsed)));
        long.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_deadlines_each_end_the_right_way() {
        let calls: Vec<_> = (0..200u64)
            .map(|i| {
                tokio::spawn(async move {
                    // Even ones finish first, odd ones hang and are cut off.
                    let limit = Duration::from_millis(20 + i % 7);
                    if i % 2 == 0 {
                        timeout(limit * 10, async { i }).await
                    } else {
                        timeout(limit, std::future::pending::<u64>()).await
                    }
                })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let answer = call.await.unwrap();
            if i % 2 == 0 {
                assert_eq!(answer, Ok(i as u64));
            } else {
                assert_eq!(answer, Err(Elapsed));
            }
        }
    }

    #[tokio::test]
    async fn a_timeout_moved_to_another_task_wakes_that_task() {
        let mut waiting = Box::pin(timeout(
            Duration::from_millis(30),
            std::future::pending::<()>(),
        ));
        // First polled with a waker that wakes nothing, then awaited by another task: the
        // table must hold the new task's waker, or that task never wakes.
        let noop = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&noop);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        let moved = tokio::spawn(waiting);
        let answer = tokio::time::timeout(Duration::from_secs(5), moved).await;
        assert_eq!(answer.unwrap().unwrap(), Err(Elapsed));
    }

    #[test]
    fn a_limit_too_far_for_an_instant_means_no_limit() {
        let far = timeout(Duration::MAX, std::future::ready(()));
        assert!(far.deadline > Instant::now() + Duration::from_secs(86_400 * 365));
    }

    #[tokio::test]
    async fn a_dropped_timeout_leaves_the_table() {
        let mut pending = Box::pin(timeout(
            Duration::from_secs(60),
            std::future::pending::<()>(),
        ));
        assert!(futures_util::poll!(pending.as_mut()).is_pending());
        let (key, deadline) = (pending.registered.as_ref().unwrap().key, pending.deadline);
        drop(pending);
        // Gone, or the slot reused by another test's deadline.
        let table = Timer::shared().unwrap().lock();
        assert!(
            table
                .entries
                .get(key)
                .is_none_or(|e| e.deadline != deadline)
        );
    }
}
