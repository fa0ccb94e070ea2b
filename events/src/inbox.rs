//! The consumer's side of exactly-once: an event's id is recorded in the inbox in the same
//! transaction as its handler's effects, so a redelivered event has no second effect. Events
//! arrive in batches (per key in order); a batch is applied in one transaction (a savepoint per
//! event), a failing event is retried alone with backoff and, once its attempts are spent,
//! becomes a dead letter so the events behind it go on.

use std::time::Duration;

use msakit_resilience::retry::Backoff;
use sqlx::{AnyConnection, AnyPool, Connection};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::EventsError;
use crate::clock::now_ms;
use crate::dead_letter;
use crate::envelope::Envelope;
use crate::error::HandlerError;
use crate::handler::TopicHandlers;

/// How long one transaction applies events before it commits and the next one begins.
const HOLD_TRANSACTION_AT_MOST: Duration = Duration::from_millis(100);

/// How a failing handler is retried before its event becomes a dead letter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included. Default 5.
    pub max_attempts: u32,
    /// The pause before each retry. Default full jitter from 100 ms, doubling.
    pub backoff: Backoff,
    /// No pause is longer. Default 5 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::default(),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Attempts in all (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The pause before each retry.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

/// What became of one event at its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    Duplicate,
    DeadLettered,
}

/// Applies `batch` (events of one topic, in order) for `handlers`' group. Returns how many of
/// the batch are done — applied, seen before, skipped (no handler) or dead-lettered — from the
/// front: all of them, or fewer when `until` passes first. An error (the database) means the
/// rest are not done and must be delivered again.
pub(crate) async fn apply(
    pool: &AnyPool,
    handlers: &TopicHandlers,
    policy: &RetryPolicy,
    batch: &[Envelope],
    until: Option<Instant>,
) -> Result<usize, EventsError> {
    let mut done = 0;
    while done < batch.len() {
        // One transaction for as many events as succeed, but held briefly: SQLite has one
        // writer, and the other instances (and the relay) wait for it.
        let mut transaction = pool.begin().await?;
        let opened = Instant::now();
        let mut next = done;
        let mut failure = None;
        for envelope in &batch[done..] {
            if next > done && opened.elapsed() >= HOLD_TRANSACTION_AT_MOST {
                break;
            }
            let Some(handler) = handlers.for_event(envelope) else {
                next += 1;
                continue;
            };
            let mut savepoint = transaction.begin().await?;
            if !record(&mut savepoint, &handlers.group, &envelope.id).await? {
                savepoint.rollback().await?;
                next += 1;
                continue;
            }
            let handled = match handler.handle(&mut savepoint, envelope, 1).await {
                Ok(()) => still_usable(&mut savepoint).await,
                failed => failed,
            };
            match handled {
                Ok(()) => {
                    savepoint.commit().await?;
                    next += 1;
                }
                Err(error) => {
                    savepoint.rollback().await?;
                    failure = Some(error);
                    break;
                }
            }
        }
        transaction.commit().await?;
        done = next;
        if let Some(error) = failure {
            retry(pool, handlers, policy, &batch[done], error).await?;
            done += 1;
        }
        if until.is_some_and(|until| Instant::now() >= until) {
            break;
        }
    }
    metrics::counter!("msakit_events_consumed_total", "group" => handlers.group.clone())
        .increment(done as u64);
    Ok(done)
}

/// Attempts 2… of one event that failed its first, then the dead-letter store.
async fn retry(
    pool: &AnyPool,
    handlers: &TopicHandlers,
    policy: &RetryPolicy,
    envelope: &Envelope,
    first: HandlerError,
) -> Result<Outcome, EventsError> {
    let Some(handler) = handlers.for_event(envelope) else {
        return Ok(Outcome::Applied);
    };
    let mut error = first;
    let mut attempt = 1;
    let mut pause = Duration::ZERO;
    while !error.is_permanent() && attempt < policy.max_attempts {
        tracing::warn!(group = %handlers.group, topic = %envelope.topic, id = %envelope.id,
            attempt, %error, "handler failed; retrying");
        pause = policy.backoff.delay(attempt, pause, policy.max_delay);
        tokio::time::sleep(pause).await;
        attempt += 1;
        let mut transaction = pool.begin().await?;
        if !record(&mut transaction, &handlers.group, &envelope.id).await? {
            transaction.rollback().await?;
            return Ok(Outcome::Duplicate);
        }
        let handled = match handler.handle(&mut transaction, envelope, attempt).await {
            Ok(()) => still_usable(&mut transaction).await,
            failed => failed,
        };
        match handled {
            Ok(()) => {
                transaction.commit().await?;
                return Ok(Outcome::Applied);
            }
            Err(failed) => {
                transaction.rollback().await?;
                error = failed;
            }
        }
    }
    let stored = dead_letter::store(
        pool,
        &handlers.group,
        envelope,
        &error.to_string(),
        attempt,
        dead_letter::Letter::New,
    )
    .await?;
    if !stored {
        return Ok(Outcome::Duplicate);
    }
    tracing::error!(group = %handlers.group, topic = %envelope.topic, id = %envelope.id,
        attempts = attempt, %error, "handler failed every attempt; the event is a dead letter");
    metrics::counter!("msakit_events_dead_lettered_total", "group" => handlers.group.clone())
        .increment(1);
    Ok(Outcome::DeadLettered)
}

/// While `held` (the relay's lease: one instance per database does it), forgets inbox records
/// older than `retention`, except those of dead letters. An event redelivered after that would be
/// applied again: keep the retention longer than any redelivery (a Kafka consumer group's offsets,
/// a direct delivery's retries).
pub(crate) async fn prune_while(pool: AnyPool, retention: Duration, held: CancellationToken) {
    let every = (retention / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::select! {
            () = held.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let pruned = sqlx::query(
            "DELETE FROM msakit_inbox WHERE handled_at_ms < $1 AND NOT EXISTS ( \
             SELECT 1 FROM msakit_dead_letter d WHERE d.consumer_group = msakit_inbox.consumer_group \
             AND d.event_id = msakit_inbox.event_id)",
        )
        .bind(crate::clock::ms_ago(retention))
        .execute(&pool)
        .await;
        if let Err(error) = pruned {
            tracing::warn!(%error, "inbox not pruned");
        }
    }
}

/// Proves the handler's transaction still works: a handler that swallowed a failed statement
/// leaves a PostgreSQL transaction aborted, and its commit would silently write nothing — not
/// even the inbox record — while the event was acknowledged.
pub(crate) async fn still_usable(db: &mut AnyConnection) -> Result<(), HandlerError> {
    sqlx::query("SELECT 1")
        .execute(&mut *db)
        .await
        .map(|_| ())
        .map_err(|error| {
            HandlerError::transient(format!(
                "the handler's transaction is no longer usable: {error}"
            ))
        })
}

/// Records `event_id` as handled by `group`; false if it already was.
pub(crate) async fn record(
    db: &mut AnyConnection,
    group: &str,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO msakit_inbox (consumer_group, event_id, handled_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(event_id)
    .bind(now_ms())
    .execute(&mut *db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
