//! Events a consumer group could not apply in every attempt: kept with the last error for an
//! operator to list and replay once the cause is fixed. A dead letter is also in the inbox, so
//! redelivery does not apply it behind the operator's back.

use serde::Serialize;
use sqlx::{AnyPool, Row};

use crate::EventsError;
use crate::clock::now_ms;
use crate::envelope::Envelope;
use crate::error::BoxError;
use crate::handler::TopicHandlers;
use crate::inbox;

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The consumer group that failed it.
    pub group: String,
    /// The event.
    pub envelope: Envelope,
    /// The last attempt's error.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it became a dead letter, milliseconds since the Unix epoch.
    pub failed_at_ms: i64,
}

/// Whether a dead letter is new, or one that is being stored again after a failed replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Letter {
    /// The event failed every attempt: stored only if no other instance of the group has applied
    /// it meanwhile (then it is a duplicate, and there is nothing to store).
    New,
    /// A replay failed: the inbox already has it, the letter is updated.
    Again,
}

/// Stores a dead letter and marks the event handled, in one transaction. False when the event
/// was already applied (a [`Letter::New`] that lost the race): nothing stored.
pub(crate) async fn store(
    pool: &AnyPool,
    group: &str,
    envelope: &Envelope,
    error: &str,
    attempts: u32,
    letter: Letter,
) -> Result<bool, EventsError> {
    let mut transaction = pool.begin().await?;
    let recorded = inbox::record(&mut transaction, group, &envelope.id).await?;
    if !recorded && letter == Letter::New {
        transaction.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO msakit_dead_letter (consumer_group, event_id, topic, event_key, envelope, \
         error, attempts, failed_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (consumer_group, event_id) DO UPDATE SET error = excluded.error, \
         attempts = excluded.attempts, failed_at_ms = excluded.failed_at_ms",
    )
    .bind(group)
    .bind(&envelope.id)
    .bind(&envelope.topic)
    .bind(&envelope.key)
    .bind(serde_json::to_string(envelope)?)
    .bind(error)
    .bind(i64::from(attempts))
    .bind(now_ms())
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(true)
}

/// Dead letters, oldest first, of one group or of all.
pub(crate) async fn list(
    pool: &AnyPool,
    group: Option<&str>,
    limit: u32,
) -> Result<Vec<DeadLetter>, EventsError> {
    let rows = sqlx::query(
        "SELECT consumer_group, envelope, error, attempts, failed_at_ms FROM msakit_dead_letter \
         WHERE ($1 = '' OR consumer_group = $1) ORDER BY failed_at_ms, event_id LIMIT $2",
    )
    .bind(group.unwrap_or(""))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DeadLetter {
                group: row.try_get(0)?,
                envelope: serde_json::from_str(&row.try_get::<String, _>(1)?)?,
                error: row.try_get(2)?,
                attempts: u32::try_from(row.try_get::<i64, _>(3)?).unwrap_or(u32::MAX),
                failed_at_ms: row.try_get(4)?,
            })
        })
        .collect()
}

/// Runs the handler once more on a dead letter, in one transaction with its removal from the
/// store: applied and gone, or still there with this attempt's error.
pub(crate) async fn replay(
    pool: &AnyPool,
    handlers: &TopicHandlers,
    letter: &DeadLetter,
) -> Result<(), EventsError> {
    let envelope = &letter.envelope;
    let handler = handlers
        .for_event(envelope)
        .ok_or_else(|| EventsError::NoHandler {
            group: letter.group.clone(),
            topic: envelope.topic.clone(),
            event_type: envelope.event_type.clone(),
        })?;
    let mut transaction = pool.begin().await?;
    let removed =
        sqlx::query("DELETE FROM msakit_dead_letter WHERE consumer_group = $1 AND event_id = $2")
            .bind(&letter.group)
            .bind(&envelope.id)
            .execute(&mut *transaction)
            .await?;
    if removed.rows_affected() == 0 {
        return Err(EventsError::NoSuchDeadLetter {
            group: letter.group.clone(),
            event_id: envelope.id.clone(),
        });
    }
    let attempt = letter.attempts.saturating_add(1);
    let handled = match handler.handle(&mut transaction, envelope, attempt).await {
        Ok(()) => inbox::still_usable(&mut transaction).await,
        failed => failed,
    };
    match handled {
        Ok(()) => {
            transaction.commit().await?;
            Ok(())
        }
        Err(error) => {
            transaction.rollback().await?;
            let message = error.to_string();
            store(
                pool,
                &letter.group,
                envelope,
                &message,
                attempt,
                Letter::Again,
            )
            .await?;
            Err(EventsError::ReplayFailed(BoxError::from(message)))
        }
    }
}

/// One dead letter by group and event id.
pub(crate) async fn find(
    pool: &AnyPool,
    group: &str,
    event_id: &str,
) -> Result<DeadLetter, EventsError> {
    let row = sqlx::query(
        "SELECT envelope, error, attempts, failed_at_ms FROM msakit_dead_letter \
         WHERE consumer_group = $1 AND event_id = $2",
    )
    .bind(group)
    .bind(event_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| EventsError::NoSuchDeadLetter {
        group: group.to_owned(),
        event_id: event_id.to_owned(),
    })?;
    Ok(DeadLetter {
        group: group.to_owned(),
        envelope: serde_json::from_str(&row.try_get::<String, _>(0)?)?,
        error: row.try_get(1)?,
        attempts: u32::try_from(row.try_get::<i64, _>(2)?).unwrap_or(u32::MAX),
        failed_at_ms: row.try_get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::Backend;

    fn envelope(id: &str) -> Envelope {
        Envelope {
            id: id.to_owned(),
            topic: "orders".to_owned(),
            key: "k".to_owned(),
            event_type: "Placed".to_owned(),
            schema_version: 1,
            source: "order".to_owned(),
            occurred_at_ms: 1,
            traceparent: String::new(),
            payload: serde_json::Value::Null,
        }
    }

    #[tokio::test]
    async fn a_new_dead_letter_is_not_stored_for_an_event_another_instance_applied() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("db").display());
        let pool = crate::connect(&url).await.unwrap();
        Backend::Sqlite.install_schema(&pool).await.unwrap();
        // Applied by another instance while this one spent its attempts.
        let mut db = pool.acquire().await.unwrap();
        assert!(inbox::record(&mut db, "payment", "applied").await.unwrap());
        drop(db);
        let applied = envelope("applied");
        let stored = store(&pool, "payment", &applied, "boom", 5, Letter::New).await;
        assert!(!stored.unwrap(), "a duplicate is not a dead letter");
        assert!(list(&pool, None, 10).await.unwrap().is_empty());
        // A fresh failure is stored; storing it again after a failed replay updates it.
        let failed = envelope("failed");
        assert!(
            store(&pool, "payment", &failed, "boom", 5, Letter::New)
                .await
                .unwrap()
        );
        assert!(
            store(&pool, "payment", &failed, "again", 6, Letter::Again)
                .await
                .unwrap()
        );
        let letters = list(&pool, None, 10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(
            (letters[0].error.as_str(), letters[0].attempts),
            ("again", 6)
        );
    }
}
