//! The direct transport, for one machine and the demo: no broker. The relay moves committed
//! outbox rows into this database's event log (one transaction: moved or not), and, while it
//! holds the relay lease, delivers the log to every consumer group that subscribes to a topic —
//! found in the registry, where each instance lists its subscriptions in its metadata — calling
//! one instance of the group's service at a time with the SDK's balanced, retried client. A
//! group's position is stored with it, so a delivery resumes where it stopped after any crash.
//!
//! Same outbox, same inbox, same guarantees as Kafka, except: events are kept only until every
//! known group has them and the retention has passed, so a group that subscribes later gets
//! what is still kept, not the whole history.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use msakit::{Discovery, ServiceClient, ServiceClientOptions};
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::EventsError;
use crate::clock::now_ms;
use crate::envelope::Envelope;
use crate::events::Shared;
use crate::relay::{OutboxRow, delete_statement};

/// The registration metadata key listing an instance's subscriptions, `topic=group,…`.
pub const SUBSCRIPTIONS_METADATA: &str = "msakit.subscriptions";
/// Events sent to a group in one call.
const DELIVERY_BATCH: i64 = 256;
/// Bytes of events sent in one call at most (one event is always sent, up to
/// [`MAX_ENVELOPE_BYTES`](crate::MAX_ENVELOPE_BYTES)).
const DELIVERY_BATCH_BYTES: usize = 4 << 20;
/// The largest delivery a consumer reads.
const DELIVERY_BODY_LIMIT: usize = 8 << 20;
/// How long a consumer applies events before answering with what it has done.
const APPLY_BUDGET: Duration = Duration::from_secs(2);
/// How often the registry is asked for new subscribers.
const FIND_GROUPS_EVERY: Duration = Duration::from_secs(1);
/// How long delivered events stay in the log.
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// What the relay's holder needs to deliver.
pub(crate) struct DirectDeliveries {
    discovery: Discovery,
    calls: ServiceClient,
    retention: Duration,
    /// The log's newest sequence number, for the delivery loops to wait on.
    appended: watch::Sender<i64>,
}

impl DirectDeliveries {
    pub(crate) fn new(client: &msakit::Client, retention: Duration) -> Result<Self, EventsError> {
        let discovery = client.discovery()?;
        let options = ServiceClientOptions::default()
            .max_attempts(3)
            .attempt_timeout(Duration::from_secs(30))
            .deadline(Duration::from_secs(60));
        let calls = client.service_client(options)?;
        Ok(Self {
            discovery,
            calls,
            retention,
            appended: watch::channel(0).0,
        })
    }
}

/// Moves `rows` from the outbox into the log, in one transaction, if `holder` still holds the
/// relay lease.
pub(crate) async fn append(
    pool: &AnyPool,
    holder: &str,
    rows: &[OutboxRow],
    deliveries: &DirectDeliveries,
) -> Result<(), EventsError> {
    let mut transaction = pool.begin().await?;
    let now = now_ms();
    // The fence: only the lease's holder appends, and (PostgreSQL) the lease row stays locked
    // until this commits, so a takeover waits for it and the log's order is the commit order.
    let fenced = sqlx::query(
        "UPDATE msakit_relay_lease SET holder = holder \
         WHERE name = 'relay' AND holder = $1 AND expires_at_ms >= $2",
    )
    .bind(holder)
    .bind(now)
    .execute(&mut *transaction)
    .await?;
    if fenced.rows_affected() != 1 {
        transaction.rollback().await?;
        return Err(EventsError::LeaseLost);
    }
    let mut last = 0;
    for row in rows {
        let seq: i64 = sqlx::query(
            "INSERT INTO msakit_event_log (topic, event_key, envelope, appended_at_ms) \
             VALUES ($1, $2, $3, $4) RETURNING seq",
        )
        .bind(&row.topic)
        .bind(&row.key)
        .bind(&row.envelope)
        .bind(now)
        .fetch_one(&mut *transaction)
        .await?
        .try_get(0)?;
        last = seq;
    }
    sqlx::query(sqlx::AssertSqlSafe(delete_statement(rows)))
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    deliveries.appended.send_replace(last);
    Ok(())
}

/// One consumer group of one topic, and the service whose instances apply its events.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Group {
    topic: String,
    group: String,
    service: String,
}

/// While `held`: finds subscribing groups in the registry (and remembers them), runs one
/// delivery loop per group, and trims the log.
pub(crate) async fn deliver_while(
    deliveries: Arc<DirectDeliveries>,
    pool: AnyPool,
    held: CancellationToken,
    tracker: TaskTracker,
) {
    let mut running: HashSet<Group> = HashSet::new();
    let mut last_trim = tokio::time::Instant::now();
    loop {
        match known_groups(&deliveries, &pool).await {
            Ok(groups) => {
                for group in groups {
                    if running.insert(group.clone()) {
                        tracing::info!(topic = %group.topic, group = %group.group,
                            service = %group.service, "delivering to a consumer group");
                        tracker.spawn(deliver(
                            Arc::clone(&deliveries),
                            pool.clone(),
                            group,
                            held.clone(),
                        ));
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "direct transport: subscribers not refreshed"),
        }
        if last_trim.elapsed() >= Duration::from_secs(10) {
            last_trim = tokio::time::Instant::now();
            if let Err(error) = trim(&pool, deliveries.retention).await {
                tracing::warn!(%error, "direct transport: log not trimmed");
            }
        }
        tokio::select! {
            () = held.cancelled() => return,
            () = tokio::time::sleep(FIND_GROUPS_EVERY) => {}
        }
    }
}

/// The groups in the registry now, stored (a group once seen is owed every later event, even
/// while none of its instances is up), and those stored before.
async fn known_groups(
    deliveries: &DirectDeliveries,
    pool: &AnyPool,
) -> Result<Vec<Group>, EventsError> {
    if let Ok(services) = deliveries.discovery.services().await {
        for service in services {
            let Ok(instances) = deliveries.discovery.instances(&service).await else {
                continue;
            };
            let declared: HashSet<(String, String)> = instances
                .iter()
                .filter_map(|instance| instance.metadata.get(SUBSCRIPTIONS_METADATA))
                .flat_map(|listed| parse_subscriptions(listed))
                .collect();
            for (topic, group) in declared {
                sqlx::query(
                    "INSERT INTO msakit_direct_group (topic, consumer_group, service, delivered_seq) \
                     VALUES ($1, $2, $3, 0) ON CONFLICT (topic, consumer_group) \
                     DO UPDATE SET service = excluded.service",
                )
                .bind(&topic)
                .bind(&group)
                .bind(&service)
                .execute(pool)
                .await?;
            }
        }
    }
    let rows = sqlx::query("SELECT topic, consumer_group, service FROM msakit_direct_group")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Group {
                topic: row.try_get(0)?,
                group: row.try_get(1)?,
                service: row.try_get(2)?,
            })
        })
        .collect()
}

/// `topic=group,topic=group` → pairs; malformed entries are skipped.
pub(crate) fn parse_subscriptions(listed: &str) -> Vec<(String, String)> {
    listed
        .split(',')
        .filter_map(|entry| entry.trim().split_once('='))
        .filter(|(topic, group)| !topic.is_empty() && !group.is_empty())
        .map(|(topic, group)| (topic.to_owned(), group.to_owned()))
        .collect()
}

/// Delivers `group`'s topic from its stored position, a batch at a time, for as long as `held`.
async fn deliver(
    deliveries: Arc<DirectDeliveries>,
    pool: AnyPool,
    group: Group,
    held: CancellationToken,
) {
    let mut appended = deliveries.appended.subscribe();
    let mut failures = 0u32;
    let path = format!("/msakit/events/{}/{}", group.topic, group.group);
    loop {
        if held.is_cancelled() {
            return;
        }
        let batch = match pending(&pool, &group).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "direct transport: log unreadable");
                failures += 1;
                crate::pause::after_failure(failures, &held).await;
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = held.cancelled() => return,
                _ = appended.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            continue;
        }
        let body = format!(
            "{{\"events\":[{}]}}",
            batch
                .iter()
                .map(|(_, envelope)| envelope.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let sent = tokio::select! {
            () = held.cancelled() => return,
            sent = deliveries
                .calls
                .post(&group.service, &path)
                .header("content-type", "application/json")
                .body(body)
                .retryable()
                .send() => sent,
        };
        let acknowledged = match sent {
            Ok(response) if response.status().is_success() => {
                match response.json::<Acknowledged>().await {
                    Ok(ack) => ack.acknowledged.min(batch.len()),
                    Err(error) => {
                        tracing::warn!(%error, group = %group.group, "direct transport: unreadable answer");
                        0
                    }
                }
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), group = %group.group,
                    service = %group.service, "direct transport: delivery refused");
                0
            }
            Err(error) => {
                tracing::warn!(%error, group = %group.group, service = %group.service,
                    "direct transport: delivery failed");
                0
            }
        };
        if acknowledged == 0 {
            failures += 1;
            crate::pause::after_failure(failures, &held).await;
            continue;
        }
        failures = 0;
        let delivered = batch[acknowledged - 1].0;
        let stored = sqlx::query(
            "UPDATE msakit_direct_group SET delivered_seq = $1 \
             WHERE topic = $2 AND consumer_group = $3 AND delivered_seq < $1",
        )
        .bind(delivered)
        .bind(&group.topic)
        .bind(&group.group)
        .execute(&pool)
        .await;
        if let Err(error) = stored {
            // Delivered again from the old position later: the inbox absorbs it.
            tracing::warn!(%error, "direct transport: position not stored");
        }
        if (batch.len() as i64) < DELIVERY_BATCH {
            tokio::time::sleep(crate::relay::LINGER).await;
        }
    }
}

/// The next events for `group`: sequence number and envelope JSON.
async fn pending(pool: &AnyPool, group: &Group) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT l.seq, l.envelope FROM msakit_event_log l, msakit_direct_group g \
         WHERE g.topic = $1 AND g.consumer_group = $2 AND l.topic = g.topic \
         AND l.seq > g.delivered_seq ORDER BY l.seq LIMIT $3",
    )
    .bind(&group.topic)
    .bind(&group.group)
    .bind(DELIVERY_BATCH)
    .fetch_all(pool)
    .await?;
    let mut batch = Vec::with_capacity(rows.len());
    let mut bytes = 0;
    for row in &rows {
        let envelope: String = row.try_get(1)?;
        bytes += envelope.len();
        if !batch.is_empty() && bytes > DELIVERY_BATCH_BYTES {
            break;
        }
        batch.push((row.try_get(0)?, envelope));
    }
    Ok(batch)
}

/// Drops events every known group of their topic has, once older than the retention.
async fn trim(pool: &AnyPool, retention: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM msakit_event_log WHERE appended_at_ms < $1 AND seq <= COALESCE( \
         (SELECT MIN(g.delivered_seq) FROM msakit_direct_group g \
          WHERE g.topic = msakit_event_log.topic), seq)",
    )
    .bind(crate::clock::ms_ago(retention))
    .execute(pool)
    .await?;
    Ok(())
}

/// What a consumer receives.
#[derive(Deserialize)]
struct Delivery {
    events: Vec<Envelope>,
}

/// What a consumer answers: how many of the batch, from the front, are done.
#[derive(Serialize, Deserialize)]
struct Acknowledged {
    acknowledged: usize,
}

/// The consumer's route: `POST /msakit/events/{topic}/{group}`.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/msakit/events/{topic}/{group}", post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(DELIVERY_BODY_LIMIT))
        .with_state(shared)
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path((topic, group)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(handlers) = shared.handlers(&group, &topic) else {
        return crate::admin::error(
            StatusCode::NOT_FOUND,
            "not_subscribed",
            &format!("this instance does not subscribe {group} to {topic}"),
        );
    };
    let delivery: Delivery = match serde_json::from_slice(&body) {
        Ok(delivery) => delivery,
        Err(error) => {
            return crate::admin::error(
                StatusCode::BAD_REQUEST,
                "invalid_events",
                &error.to_string(),
            );
        }
    };
    if let Some(stray) = delivery.events.iter().find(|e| e.topic != topic) {
        return crate::admin::error(
            StatusCode::BAD_REQUEST,
            "invalid_events",
            &format!("event {} is on {}, not {topic}", stray.id, stray.topic),
        );
    }
    let until = tokio::time::Instant::now() + APPLY_BUDGET;
    match crate::inbox::apply(
        shared.pool(),
        &handlers,
        shared.policy(),
        &delivery.events,
        Some(until),
    )
    .await
    {
        Ok(acknowledged) => axum::Json(Acknowledged { acknowledged }).into_response(),
        Err(error) => crate::admin::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &error.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_metadata_parses_and_skips_malformed_entries() {
        assert_eq!(
            parse_subscriptions("orders=payment, payments=order,bad,=x,y="),
            vec![
                ("orders".to_owned(), "payment".to_owned()),
                ("payments".to_owned(), "order".to_owned())
            ]
        );
    }
}
