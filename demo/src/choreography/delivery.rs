//! Delivery, choreographed: schedules (or fails) a delivery on `PaymentCharged` and publishes
//! what it did, in one transaction. No unique keys: a second effect would be a second row.

use axum::Router;
use msakit_events::{AnyConnection, Event, Events, Handler, HandlerError};
use serde::Deserialize;

use super::events::{DELIVERIES, DeliveryFailed, DeliveryScheduled, PAYMENTS, PaymentCharged};
use super::payment::InFlight;
use super::{note, open, topic, undeliverable};
use crate::services::{Faults, Instance, ServiceArgs, ServiceConfig, now_ms};

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS deliveries (order_id TEXT NOT NULL, at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failures (order_id TEXT NOT NULL, at BIGINT NOT NULL)",
];

#[derive(Debug, Deserialize)]
struct DeliveryConfig {
    #[serde(default)]
    faults: Faults,
}

impl ServiceConfig for DeliveryConfig {
    fn faults(&self) -> &Faults {
        &self.faults
    }
}

#[derive(Clone)]
struct Delivery {
    events: Events,
    deliveries_topic: String,
}

pub(crate) async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let mut instance = Instance::<DeliveryConfig>::start(args).await?;
    let (_, events) = open(&instance, &SCHEMA).await?;
    let delivery = Delivery {
        events: events.clone(),
        deliveries_topic: topic(&instance.args, DELIVERIES),
    };
    events
        .subscribe("delivery", &topic(&instance.args, PAYMENTS), delivery)
        .await?;
    instance.register(&[events.registration_metadata()]).await?;
    let served = instance.serve(Router::new().merge(events.routes())).await;
    events.shutdown().await;
    served
}

impl Handler<PaymentCharged> for Delivery {
    async fn handle(
        &self,
        db: &mut AnyConnection,
        event: Event<PaymentCharged>,
    ) -> Result<(), HandlerError> {
        let _working = InFlight::new();
        let charged = &event.payload;
        note(
            db,
            &charged.order_id,
            &event.topic,
            "PaymentCharged",
            charged.step,
        )
        .await?;
        let table = if undeliverable(charged.amount) {
            "failures"
        } else {
            "deliveries"
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (order_id, at) VALUES ($1, $2)"
        )))
        .bind(&charged.order_id)
        .bind(now_ms())
        .execute(&mut *db)
        .await?;
        if undeliverable(charged.amount) {
            let failed = DeliveryFailed {
                order_id: charged.order_id.clone(),
                reason: "address unreachable".into(),
                step: 1,
            };
            self.events
                .event(&self.deliveries_topic, &charged.order_id, &failed)
                .trace(event.trace())
                .publish(db)
                .await
                .map_err(HandlerError::transient)?;
        } else {
            let scheduled = DeliveryScheduled {
                order_id: charged.order_id.clone(),
                step: 1,
            };
            self.events
                .event(&self.deliveries_topic, &charged.order_id, &scheduled)
                .trace(event.trace())
                .publish(db)
                .await
                .map_err(HandlerError::transient)?;
        }
        Ok(())
    }
}
