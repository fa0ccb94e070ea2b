//! Payment: charges and refunds, both idempotent by order id, in payment's own database.
//!
//! A charge is keyed by the `Idempotency-Key` header (the order id): a retried charge, on this
//! instance or the other, finds the first one and answers it again, so nothing is charged twice.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use msakit_server_kit::ApiError;
use serde::{Deserialize, Serialize};

use super::{Db, Faults, Instance, ServiceArgs, ServiceConfig, now_ms};

/// The tables.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS charges (
    order_id TEXT PRIMARY KEY, amount INTEGER NOT NULL, instance TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (
    order_id TEXT PRIMARY KEY REFERENCES charges(order_id), amount INTEGER NOT NULL, at INTEGER NOT NULL);
";

#[derive(Debug, Deserialize)]
struct PaymentConfig {
    #[serde(default)]
    faults: Faults,
}

impl ServiceConfig for PaymentConfig {
    fn faults(&self) -> &Faults {
        &self.faults
    }
}

/// A charge request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Charge {
    pub(crate) order_id: String,
    pub(crate) amount: i64,
}

#[derive(Clone)]
struct AppState {
    db: Db,
    instance: String,
}

pub(crate) async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let db = Db::open(&args.db, SCHEMA)?;
    let mut instance = Instance::<PaymentConfig>::start(args).await?;
    instance.register(&[]).await?;
    let state = AppState {
        db,
        instance: instance.args.instance.clone(),
    };
    let routes = Router::new()
        .route("/charges", post(charge))
        .route("/refunds", post(refund))
        .with_state(state);
    instance.serve(routes).await
}

async fn charge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(charge): Json<Charge>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_idempotency_key",
                "a charge needs an Idempotency-Key header",
            )
        })?;
    if key != charge.order_id {
        return Err(ApiError::bad_request(
            "idempotency_key_mismatch",
            "the Idempotency-Key must be the order id",
        ));
    }
    if charge.amount <= 0 {
        return Err(ApiError::bad_request(
            "invalid_amount",
            "the amount must be positive",
        ));
    }
    let instance = state.instance.clone();
    let (created, amount) = state
        .db
        .run(move |db| {
            let created = db.execute(
                "INSERT OR IGNORE INTO charges (order_id, amount, instance, at) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![charge.order_id, charge.amount, instance, now_ms()],
            )? == 1;
            let amount: i64 = db.query_row(
                "SELECT amount FROM charges WHERE order_id = ?1",
                [&charge.order_id],
                |row| row.get(0),
            )?;
            Ok((created, amount))
        })
        .await?;
    metrics::counter!("demo_charges_total", "replayed" => if created { "no" } else { "yes" })
        .increment(1);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({"order_id": key, "amount": amount, "replayed": !created})),
    ))
}

#[derive(Debug, Deserialize)]
struct Refund {
    order_id: String,
}

async fn refund(
    State(state): State<AppState>,
    Json(refund): Json<Refund>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let order_id = refund.order_id.clone();
    let refunded = state
        .db
        .run(move |db| {
            db.execute(
                "INSERT OR IGNORE INTO refunds (order_id, amount, at)
                 SELECT order_id, amount, ?2 FROM charges WHERE order_id = ?1",
                rusqlite::params![refund.order_id, now_ms()],
            )?;
            db.query_row(
                "SELECT COUNT(*) FROM refunds WHERE order_id = ?1",
                [&refund.order_id],
                |row| row.get::<_, i64>(0),
            )
        })
        .await?;
    metrics::counter!("demo_refunds_total").increment(1);
    Ok(Json(
        serde_json::json!({"order_id": order_id, "refunded": refunded == 1}),
    ))
}
