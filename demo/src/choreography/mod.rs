//! The choreographed order saga, beside the orchestrated one: no service calls another. Order
//! commits an order and its `OrderPlaced` in one transaction; payment charges (or declines) and
//! publishes `PaymentCharged` / `PaymentFailed`; delivery schedules (or fails) and publishes
//! `DeliveryScheduled` / `DeliveryFailed`; payment refunds on `DeliveryFailed` and order cancels
//! on the failure events. Every step is a msakit-events handler: its effects, its inbox record
//! and the events it publishes commit together, so a SIGKILL anywhere loses nothing and repeats
//! nothing. On the direct transport by default, on Kafka with `--kafka HOST:PORT`.
//!
//! The outcome of an order follows from its amount, so the report can check every order:
//! a multiple of 10 is declined, else a multiple of 7 cannot be delivered (refunded), else it
//! completes.

pub(crate) mod delivery;
pub(crate) mod events;
pub(crate) mod ledger;
pub(crate) mod order;
pub(crate) mod payment;
pub(crate) mod scenario;

use anyhow::Context;
use msakit_events::{AnyConnection, AnyPool, Events, Transport};

use crate::services::{Instance, ServiceArgs, ServiceConfig};

/// Whether payment declines an order of `amount`.
pub(crate) fn declined(amount: i64) -> bool {
    amount % 10 == 0
}

/// Whether delivery fails an order of `amount` (that payment charged).
pub(crate) fn undeliverable(amount: i64) -> bool {
    amount % 7 == 0
}

/// Every consumer's record of the events it applied, in the order applied: the report checks
/// that each order's events on a topic arrived in the order published.
const TRAIL: &str = "CREATE TABLE IF NOT EXISTS trail (
    order_id TEXT NOT NULL, topic TEXT NOT NULL, type TEXT NOT NULL, step BIGINT NOT NULL,
    at BIGINT NOT NULL)";

/// Notes an applied event in the trail, in the handler's transaction.
pub(crate) async fn note(
    db: &mut AnyConnection,
    order_id: &str,
    topic: &str,
    event_type: &str,
    step: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO trail (order_id, topic, type, step, at) VALUES ($1, $2, $3, $4, $5)")
        .bind(order_id)
        .bind(topic)
        .bind(event_type)
        .bind(step)
        .bind(crate::services::now_ms())
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// The service's database (its own SQLite file, shared by its instances) with `schema` and the
/// trail, and its events on the transport `args` names, relaying as this instance.
pub(crate) async fn open<T: ServiceConfig>(
    instance: &Instance<T>,
    schema: &[&'static str],
) -> anyhow::Result<(AnyPool, Events)> {
    let args: &ServiceArgs = &instance.args;
    let url = format!("sqlite://{}?mode=rwc", args.db.display());
    let pool = msakit_events::connect(&url)
        .await
        .with_context(|| format!("opening {url}"))?;
    for statement in schema.iter().copied().chain([TRAIL]) {
        sqlx::query(statement).execute(&pool).await?;
    }
    let transport = match args.kafka.as_deref() {
        Some(brokers) => Transport::kafka(brokers),
        None => Transport::direct(&instance.client),
    };
    let events = Events::builder(pool.clone(), args.kind.name())
        .instance(&args.instance)
        .transport(transport)
        .start()
        .await
        .context("starting the events")?;
    Ok((pool, events))
}

/// A topic's name in this run: `--topic-prefix` keeps runs on one broker apart.
pub(crate) fn topic(args: &ServiceArgs, name: &str) -> String {
    format!("{}{name}", args.topic_prefix)
}
