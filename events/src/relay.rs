//! The relay: takes committed events from the outbox, in outbox order, and hands them to the
//! transport; only then removes them. One relay publishes per database at a time, by lease (a
//! row with a holder and an expiry), so instances of a service do not race each other; when the
//! holder dies another takes over within the lease. A crash between handing over and removing
//! means the batch goes again (duplicates the inbox absorbs), never that an event is lost.
//!
//! It is woken by a publish in this process and then looks until the publishing transaction
//! has committed (a few milliseconds of quick looks), and otherwise polls, for events committed
//! by other processes.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyPool, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::EventsError;
use crate::clock::now_ms;
use crate::transport::Sink;

/// Events taken from the outbox at a time.
const BATCH: i64 = 500;
/// How long a lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(5);
/// How often the holder renews, and others try.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How often the outbox is looked at without a wake-up.
const POLL: Duration = Duration::from_millis(250);
/// The pause after a short batch, for the next to gather.
pub(crate) const LINGER: Duration = Duration::from_millis(2);
/// The longest quick look after a wake-up found nothing yet.
const QUICK_LOOKS_UP_TO: Duration = Duration::from_millis(64);

/// One committed event waiting in the outbox.
#[derive(Debug, Clone)]
pub(crate) struct OutboxRow {
    pub(crate) id: i64,
    pub(crate) topic: String,
    pub(crate) key: String,
    /// The envelope as JSON, as written.
    pub(crate) envelope: String,
}

/// Runs until `stop`: holds the lease when it can, and while it does, publishes and runs what
/// needs one holder per database (the direct transport's deliveries, pruning the inbox).
pub(crate) async fn run(
    pool: AnyPool,
    holder: String,
    wake: Arc<Notify>,
    sink: Sink,
    inbox_retention: Duration,
    stop: CancellationToken,
) {
    loop {
        match take_lease(&pool, &holder).await {
            Ok(true) => {
                tracing::info!(%holder, "holding the relay lease");
                let held = stop.child_token();
                let duties = sink.start_duties(&pool, held.clone());
                duties.spawn(crate::inbox::prune_while(
                    pool.clone(),
                    inbox_retention,
                    held.clone(),
                ));
                tokio::select! {
                    () = keep_lease(&pool, &holder, &held) => {}
                    () = publish(&pool, &holder, &wake, &sink, &held) => {}
                }
                held.cancel();
                duties.wait().await;
                if stop.is_cancelled() {
                    release_lease(&pool, &holder).await;
                    return;
                }
                tracing::warn!(%holder, "lost the relay lease");
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "relay lease: database unavailable"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
    }
}

/// Renews the lease every second; returns when it is lost or `held` is cancelled.
async fn keep_lease(pool: &AnyPool, holder: &str, held: &CancellationToken) {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = held.cancelled() => return,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
        match take_lease(pool, holder).await {
            Ok(true) => last_renewed = tokio::time::Instant::now(),
            Ok(false) => return,
            // Unreachable database: keep publishing (it will fail too) until the lease would
            // have expired for the others.
            Err(error) if last_renewed.elapsed() < LEASE - RENEW_EVERY => {
                tracing::warn!(%error, "relay lease not renewed");
            }
            Err(_) => return,
        }
    }
}

/// Takes or renews the lease; true when `holder` has it.
async fn take_lease(pool: &AnyPool, holder: &str) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let taken = sqlx::query(
        "INSERT INTO msakit_relay_lease (name, holder, expires_at_ms) VALUES ('relay', $1, $2) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
         expires_at_ms = excluded.expires_at_ms \
         WHERE msakit_relay_lease.holder = excluded.holder OR msakit_relay_lease.expires_at_ms < $3",
    )
    .bind(holder)
    .bind(now + LEASE.as_millis() as i64)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

async fn release_lease(pool: &AnyPool, holder: &str) {
    let released =
        sqlx::query("DELETE FROM msakit_relay_lease WHERE name = 'relay' AND holder = $1")
            .bind(holder)
            .execute(pool)
            .await;
    if let Err(error) = released {
        tracing::warn!(%error, "relay lease not released; it expires by itself");
    }
}

/// Publishes for as long as `held`: the outbox's rows in id order, a batch at a time.
async fn publish(
    pool: &AnyPool,
    holder: &str,
    wake: &Notify,
    sink: &Sink,
    held: &CancellationToken,
) {
    let mut quick_look: Option<Duration> = None;
    let mut failures = 0u32;
    loop {
        if held.is_cancelled() {
            return;
        }
        let rows = match next_batch(pool).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "relay: outbox unreadable");
                failures = failures.saturating_add(1);
                crate::pause::after_failure(failures, held).await;
                continue;
            }
        };
        if rows.is_empty() {
            if let Some(look) = quick_look.filter(|look| *look <= QUICK_LOOKS_UP_TO) {
                tokio::time::sleep(look).await;
                quick_look = Some(look * 2);
                continue;
            }
            tokio::select! {
                () = held.cancelled() => return,
                () = wake.notified() => quick_look = Some(Duration::from_millis(1)),
                () = tokio::time::sleep(POLL) => quick_look = None,
            }
            continue;
        }
        match sink.send(pool, holder, &rows).await {
            Ok(()) => {
                failures = 0;
                quick_look = Some(Duration::from_millis(1));
                metrics::counter!("msakit_events_published_total").increment(rows.len() as u64);
                // A short batch: let more gather before the next read, so a steady stream is
                // relayed in a few larger transactions rather than one per event (each is a
                // commit the service's own writers wait for).
                if (rows.len() as i64) < BATCH {
                    tokio::time::sleep(LINGER).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, events = rows.len(), "relay: transport refused the batch; retrying");
                failures = failures.saturating_add(1);
                crate::pause::after_failure(failures, held).await;
            }
        }
    }
}

async fn next_batch(pool: &AnyPool) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, topic, event_key, envelope FROM msakit_outbox ORDER BY id LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(OutboxRow {
                id: row.try_get(0)?,
                topic: row.try_get(1)?,
                key: row.try_get(2)?,
                envelope: row.try_get(3)?,
            })
        })
        .collect()
}

/// Removes relayed rows, by id (never by range: a row with a lower id may commit later).
pub(crate) fn delete_statement(rows: &[OutboxRow]) -> String {
    let ids: Vec<String> = rows.iter().map(|row| row.id.to_string()).collect();
    format!("DELETE FROM msakit_outbox WHERE id IN ({})", ids.join(","))
}

/// Removes rows handed to a transport outside the database.
pub(crate) async fn delete_relayed(pool: &AnyPool, rows: &[OutboxRow]) -> Result<(), EventsError> {
    sqlx::query(sqlx::AssertSqlSafe(delete_statement(rows)))
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_rows_are_deleted_by_id_not_by_range() {
        let row = |id| OutboxRow {
            id,
            topic: "t".into(),
            key: "k".into(),
            envelope: "{}".into(),
        };
        assert_eq!(
            delete_statement(&[row(3), row(7)]),
            "DELETE FROM msakit_outbox WHERE id IN (3,7)"
        );
    }
}
