//! Payment, choreographed: charges (or declines) on `OrderPlaced`, refunds on `DeliveryFailed`,
//! and publishes what it did — effects, inbox record and event in one transaction. The tables
//! have no unique keys on purpose: an event applied twice would show as a second row.
//!
//! `handler_delay_ms` in payment's config document makes each handler take that long (the
//! scenario's window to SIGKILL a consumer mid-handler); `demo_handlers_in_flight` says when one
//! is running.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use msakit::ConfigClient;
use msakit_events::{AnyConnection, Event, Events, Handler, HandlerError};
use serde::Deserialize;
use sqlx::Row;

use super::events::{
    DELIVERIES, DeliveryFailed, ORDERS, OrderPlaced, PAYMENTS, PaymentCharged, PaymentFailed,
    PaymentRefunded,
};
use super::{declined, note, open, topic};
use crate::services::{Faults, Instance, ServiceArgs, ServiceConfig, now_ms};

const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS charges (order_id TEXT NOT NULL, amount BIGINT NOT NULL, at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS declines (order_id TEXT NOT NULL, at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS refunds (order_id TEXT NOT NULL, amount BIGINT NOT NULL, at BIGINT NOT NULL)",
];

#[derive(Debug, Deserialize)]
pub(crate) struct PaymentConfig {
    #[serde(default)]
    faults: Faults,
    /// Each handler takes at least this long.
    #[serde(default)]
    handler_delay_ms: u64,
}

impl ServiceConfig for PaymentConfig {
    fn faults(&self) -> &Faults {
        &self.faults
    }
}

/// What payment's handlers share.
#[derive(Clone)]
struct Payment {
    events: Events,
    payments_topic: String,
    config: Arc<ConfigClient<PaymentConfig>>,
}

impl Payment {
    /// The configured delay, counted as a handler in flight.
    async fn working(&self) -> InFlight {
        let guard = InFlight::new();
        let delay = self.config.current().handler_delay_ms;
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        guard
    }
}

/// Counts a running handler in `demo_handlers_in_flight` while it lives.
pub(crate) struct InFlight;

impl InFlight {
    pub(crate) fn new() -> Self {
        metrics::gauge!("demo_handlers_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("demo_handlers_in_flight").decrement(1.0);
    }
}

pub(crate) async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let mut instance = Instance::<PaymentConfig>::start(args).await?;
    let (_, events) = open(&instance, &SCHEMA).await?;
    let payment = Payment {
        events: events.clone(),
        payments_topic: topic(&instance.args, PAYMENTS),
        config: Arc::clone(&instance.config),
    };
    events
        .subscribe::<OrderPlaced, _>("payment", &topic(&instance.args, ORDERS), payment.clone())
        .await?;
    events
        .subscribe::<DeliveryFailed, _>("payment", &topic(&instance.args, DELIVERIES), payment)
        .await?;
    instance.register(&[events.registration_metadata()]).await?;
    let served = instance.serve(Router::new().merge(events.routes())).await;
    events.shutdown().await;
    served
}

impl Handler<OrderPlaced> for Payment {
    async fn handle(
        &self,
        db: &mut AnyConnection,
        event: Event<OrderPlaced>,
    ) -> Result<(), HandlerError> {
        let _working = self.working().await;
        let order = &event.payload;
        note(db, &order.order_id, &event.topic, "OrderPlaced", order.step).await?;
        if declined(order.amount) {
            sqlx::query("INSERT INTO declines (order_id, at) VALUES ($1, $2)")
                .bind(&order.order_id)
                .bind(now_ms())
                .execute(&mut *db)
                .await?;
            let failed = PaymentFailed {
                order_id: order.order_id.clone(),
                reason: "declined".into(),
                step: 1,
            };
            self.events
                .event(&self.payments_topic, &order.order_id, &failed)
                .trace(event.trace())
                .publish(db)
                .await
                .map_err(HandlerError::transient)?;
        } else {
            sqlx::query("INSERT INTO charges (order_id, amount, at) VALUES ($1, $2, $3)")
                .bind(&order.order_id)
                .bind(order.amount)
                .bind(now_ms())
                .execute(&mut *db)
                .await?;
            let charged = PaymentCharged {
                order_id: order.order_id.clone(),
                amount: order.amount,
                step: 1,
            };
            self.events
                .event(&self.payments_topic, &order.order_id, &charged)
                .trace(event.trace())
                .publish(db)
                .await
                .map_err(HandlerError::transient)?;
        }
        metrics::counter!("demo_payment_events_total").increment(1);
        Ok(())
    }
}

impl Handler<DeliveryFailed> for Payment {
    async fn handle(
        &self,
        db: &mut AnyConnection,
        event: Event<DeliveryFailed>,
    ) -> Result<(), HandlerError> {
        let _working = self.working().await;
        let failed = &event.payload;
        note(
            db,
            &failed.order_id,
            &event.topic,
            "DeliveryFailed",
            failed.step,
        )
        .await?;
        let charged = sqlx::query("SELECT amount FROM charges WHERE order_id = $1")
            .bind(&failed.order_id)
            .fetch_optional(&mut *db)
            .await?;
        let Some(charged) = charged else {
            return Err(HandlerError::permanent(format!(
                "delivery failed for {}, which was never charged",
                failed.order_id
            )));
        };
        let amount: i64 = charged.get(0);
        sqlx::query("INSERT INTO refunds (order_id, amount, at) VALUES ($1, $2, $3)")
            .bind(&failed.order_id)
            .bind(amount)
            .bind(now_ms())
            .execute(&mut *db)
            .await?;
        let refunded = PaymentRefunded {
            order_id: failed.order_id.clone(),
            amount,
            step: 2,
        };
        self.events
            .event(&self.payments_topic, &failed.order_id, &refunded)
            .trace(event.trace())
            .publish(db)
            .await
            .map_err(HandlerError::transient)?;
        Ok(())
    }
}
