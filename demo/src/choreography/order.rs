//! Order, choreographed: `POST /orders` commits the order and its `OrderPlaced` together; the
//! order's state follows the events payment and delivery publish. Final states never change.
//!
//! `PENDING` → `PAID` (charged) → `COMPLETED` (scheduled); `PENDING` → `CANCELLED` (declined);
//! → `CANCELLING` (delivery failed) → `CANCELLED` (refunded). Events of two topics may arrive in
//! either order, so each transition names the states it may start from.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use msakit_events::{AnyConnection, Event, Events, Handler, HandlerError};
use msakit_server_kit::ApiError;
use serde::Deserialize;
use sqlx::{AnyPool, Row};

use super::events::{
    DELIVERIES, DeliveryFailed, DeliveryScheduled, ORDERS, OrderPlaced, PAYMENTS, PaymentCharged,
    PaymentFailed, PaymentRefunded,
};
use super::{note, open, topic};
use crate::services::{Faults, Instance, ServiceArgs, ServiceConfig, now_ms};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, amount BIGINT NOT NULL, state TEXT NOT NULL, created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL)";

#[derive(Debug, Deserialize)]
struct OrderConfig {
    #[serde(default)]
    faults: Faults,
}

impl ServiceConfig for OrderConfig {
    fn faults(&self) -> &Faults {
        &self.faults
    }
}

#[derive(Clone)]
struct AppState {
    pool: AnyPool,
    events: Events,
    orders_topic: String,
}

#[derive(Debug, Deserialize)]
struct PlaceOrder {
    amount: i64,
}

pub(crate) async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let mut instance = Instance::<OrderConfig>::start(args).await?;
    let (pool, events) = open(&instance, &[SCHEMA]).await?;
    let payments = topic(&instance.args, PAYMENTS);
    let deliveries = topic(&instance.args, DELIVERIES);
    let to = |from: &'static [&'static str], state: &'static str| Transition { from, to: state };
    events
        .subscribe(
            "order",
            &payments,
            to(&["PENDING"], "PAID").on::<PaymentCharged>(),
        )
        .await?;
    events
        .subscribe(
            "order",
            &payments,
            to(&["PENDING", "PAID", "CANCELLING"], "CANCELLED").on::<PaymentFailed>(),
        )
        .await?;
    events
        .subscribe(
            "order",
            &payments,
            to(&["PENDING", "PAID", "CANCELLING"], "CANCELLED").on::<PaymentRefunded>(),
        )
        .await?;
    events
        .subscribe(
            "order",
            &deliveries,
            to(&["PENDING", "PAID"], "COMPLETED").on::<DeliveryScheduled>(),
        )
        .await?;
    events
        .subscribe(
            "order",
            &deliveries,
            to(&["PENDING", "PAID"], "CANCELLING").on::<DeliveryFailed>(),
        )
        .await?;
    instance.register(&[events.registration_metadata()]).await?;
    let state = AppState {
        pool,
        events: events.clone(),
        orders_topic: topic(&instance.args, ORDERS),
    };
    let routes = Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(show))
        .with_state(state)
        .merge(events.routes());
    let served = instance.serve(routes).await;
    events.shutdown().await;
    served
}

/// Accepts an order: the row and its `OrderPlaced` in one transaction. The Idempotency-Key is
/// the order id: a retried request finds the first one.
async fn place(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(order): Json<PlaceOrder>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = crate::services::order_request(&headers, order.amount)?;
    let internal = |e: &dyn std::fmt::Display| ApiError::internal(e);
    let mut tx = state.pool.begin().await.map_err(|e| internal(&e))?;
    let created = sqlx::query(
        "INSERT INTO orders (id, amount, state, created_at, updated_at) \
         VALUES ($1, $2, 'PENDING', $3, $3) ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(order.amount)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(|e| internal(&e))?
    .rows_affected()
        == 1;
    if created {
        let placed = OrderPlaced {
            order_id: id.clone(),
            amount: order.amount,
            step: 1,
        };
        state
            .events
            .publish(&mut tx, &state.orders_topic, &id, &placed)
            .await
            .map_err(|e| internal(&e))?;
    }
    tx.commit().await.map_err(|e| internal(&e))?;
    metrics::counter!("demo_orders_total").increment(u64::from(created));
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({"id": id, "amount": order.amount})),
    ))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let row = sqlx::query("SELECT amount, state FROM orders WHERE id = $1")
        .bind(&id)
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found("no such order"))?;
    let amount: i64 = row.get(0);
    let order_state: String = row.get(1);
    Ok(Json(
        serde_json::json!({"id": id, "amount": amount, "state": order_state}),
    ))
}

/// A state change on an event: from any of `from` to `to`; from elsewhere, nothing.
#[derive(Clone, Copy)]
struct Transition {
    from: &'static [&'static str],
    to: &'static str,
}

impl Transition {
    fn on<E>(self) -> OnEvent<E> {
        OnEvent {
            transition: self,
            event: std::marker::PhantomData,
        }
    }

    async fn apply(self, db: &mut AnyConnection, order_id: &str) -> Result<(), sqlx::Error> {
        let from: Vec<String> = self.from.iter().map(|s| format!("'{s}'")).collect();
        let statement = format!(
            "UPDATE orders SET state = $1, updated_at = $2 WHERE id = $3 AND state IN ({})",
            from.join(",")
        );
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(self.to)
            .bind(now_ms())
            .bind(order_id)
            .execute(&mut *db)
            .await?;
        Ok(())
    }
}

/// The handler of one event type: notes it and applies its transition.
struct OnEvent<E> {
    transition: Transition,
    event: std::marker::PhantomData<fn() -> E>,
}

/// What order reads of every event it handles.
trait OfOrder {
    fn order_id(&self) -> &str;
    fn step(&self) -> i64;
}

macro_rules! of_order {
    ($($name:ident),*) => {$(
        impl OfOrder for $name {
            fn order_id(&self) -> &str { &self.order_id }
            fn step(&self) -> i64 { self.step }
        }
    )*};
}
of_order!(
    PaymentCharged,
    PaymentFailed,
    PaymentRefunded,
    DeliveryScheduled,
    DeliveryFailed
);

impl<E: msakit_events::EventType + OfOrder + Sync> Handler<E> for OnEvent<E> {
    async fn handle(&self, db: &mut AnyConnection, event: Event<E>) -> Result<(), HandlerError> {
        let order_id = event.payload.order_id();
        note(db, order_id, &event.topic, E::TYPE, event.payload.step()).await?;
        self.transition.apply(db, order_id).await?;
        Ok(())
    }
}
