//! Delivery: schedules a delivery per order, idempotent by order id, in delivery's own database.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use msakit_server_kit::ApiError;
use serde::Deserialize;

use super::{Db, Faults, Instance, ServiceArgs, ServiceConfig, now_ms};

/// The table.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (order_id TEXT PRIMARY KEY, at INTEGER NOT NULL);
";

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

#[derive(Debug, Deserialize)]
struct Schedule {
    order_id: String,
}

pub(crate) async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let db = Db::open(&args.db, SCHEMA)?;
    let mut instance = Instance::<DeliveryConfig>::start(args).await?;
    instance.register(&[]).await?;
    let routes = Router::new()
        .route("/deliveries", post(schedule))
        .with_state(db);
    instance.serve(routes).await
}

async fn schedule(
    State(db): State<Db>,
    Json(schedule): Json<Schedule>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let order_id = schedule.order_id.clone();
    let created = db
        .run(move |db| {
            db.execute(
                "INSERT OR IGNORE INTO deliveries (order_id, at) VALUES (?1, ?2)",
                rusqlite::params![schedule.order_id, now_ms()],
            )
        })
        .await?
        == 1;
    metrics::counter!("demo_deliveries_total").increment(1);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({"order_id": order_id, "scheduled": true})),
    ))
}
