//! Order: takes orders and runs the saga order → payment charge → delivery schedule, with a
//! refund when delivery fails. Orders live in order's own database, shared by its instances.
//!
//! States: `PENDING` → `PAID` → `COMPLETED`; `PENDING` → `PAYMENT_PENDING` when payment cannot
//! be reached (the order is accepted, the charge is retried later); `PAID` → `REFUNDING` →
//! `CANCELLED` when delivery fails; `PENDING` → `CANCELLED` when payment declines. Every step is a
//! compare-and-set on the state, and a reconciler finishes what a request (or a killed instance)
//! left half-done, so every order reaches `COMPLETED` or `CANCELLED`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use msakit::resilience::CircuitBreakerConfig;
use msakit::{CallError, ServiceClient, ServiceClientOptions};
use msakit_server_kit::ApiError;
use serde::{Deserialize, Serialize};

use super::{Db, Faults, Instance, ServiceArgs, ServiceConfig, now_ms};

/// The table.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, amount INTEGER NOT NULL, state TEXT NOT NULL, owner TEXT NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS orders_open ON orders (state, updated_at);
";

/// The states an order ends in.
pub(crate) const FINAL_STATES: [&str; 2] = ["COMPLETED", "CANCELLED"];

/// How order calls payment and delivery; read at start from order's config document.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct CallSettings {
    /// One attempt.
    pub(crate) attempt_timeout_ms: u64,
    /// The whole call, retries included.
    pub(crate) deadline_ms: u64,
    /// Attempts in all.
    pub(crate) max_attempts: u32,
    /// Consecutive failures that eject an instance.
    pub(crate) eject_after_failures: u32,
    /// The per-service breaker.
    pub(crate) breaker: CircuitBreakerConfig,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            attempt_timeout_ms: 300,
            deadline_ms: 1000,
            max_attempts: 3,
            eject_after_failures: 2,
            breaker: CircuitBreakerConfig::default(),
        }
    }
}

impl CallSettings {
    /// The SDK's options for these settings.
    pub(crate) fn options(&self) -> ServiceClientOptions {
        ServiceClientOptions::default()
            .attempt_timeout(Duration::from_millis(self.attempt_timeout_ms))
            .deadline(Duration::from_millis(self.deadline_ms))
            .max_attempts(self.max_attempts)
            .eject_after_failures(self.eject_after_failures)
            .breaker(self.breaker.clone())
    }
}

#[derive(Debug, Deserialize)]
struct OrderConfig {
    #[serde(default)]
    faults: Faults,
    #[serde(default)]
    calls: CallSettings,
}

impl ServiceConfig for OrderConfig {
    fn faults(&self) -> &Faults {
        &self.faults
    }
}

#[derive(Clone)]
struct Saga {
    db: Db,
    calls: ServiceClient,
    me: String,
}

#[derive(Debug, Deserialize)]
struct PlaceOrder {
    amount: i64,
}

/// An order as answered.
#[derive(Debug, Serialize)]
struct OrderView {
    id: String,
    amount: i64,
    state: String,
}

pub(crate) async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let db = Db::open(&args.db, SCHEMA)?;
    let mut instance = Instance::<OrderConfig>::start(args).await?;
    instance.register(&[]).await?;
    let settings = instance.config.current().calls.clone();
    settings.breaker.validate()?;
    let saga = Saga {
        db,
        calls: instance.client.service_client(settings.options())?,
        me: instance.args.instance.clone(),
    };
    tokio::spawn(reconcile(saga.clone()));
    let routes = Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(show))
        .with_state(saga);
    instance.serve(routes).await
}

async fn place(
    State(saga): State<Saga>,
    headers: HeaderMap,
    Json(order): Json<PlaceOrder>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let id = super::order_request(&headers, order.amount)?;
    let (me, key, amount) = (saga.me.clone(), id.clone(), order.amount);
    let created = saga
        .db
        .run(move |db| {
            let now = now_ms();
            db.execute(
                "INSERT OR IGNORE INTO orders (id, amount, state, owner, created_at, updated_at)
                 VALUES (?1, ?2, 'PENDING', ?3, ?4, ?4)",
                rusqlite::params![key, amount, me, now],
            )
        })
        .await?
        == 1;
    let state = if created {
        metrics::counter!("demo_orders_total").increment(1);
        saga.advance(&id, order.amount, "PENDING").await
    } else {
        saga.state(&id).await?.map(|o| o.state).unwrap_or_default()
    };
    let status = match state.as_str() {
        "COMPLETED" if created => StatusCode::CREATED,
        "PAYMENT_PENDING" | "PENDING" | "PAID" | "REFUNDING" => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    let amount = order.amount;
    Ok((status, Json(OrderView { id, amount, state })))
}

async fn show(
    State(saga): State<Saga>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    saga.state(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no order {id}")))
}

impl Saga {
    async fn state(&self, id: &str) -> Result<Option<OrderView>, ApiError> {
        let id = id.to_owned();
        self.db
            .run(move |db| {
                let mut query = db.prepare("SELECT id, amount, state FROM orders WHERE id = ?1")?;
                let mut rows = query.query([id])?;
                match rows.next()? {
                    Some(row) => Ok(Some(OrderView {
                        id: row.get(0)?,
                        amount: row.get(1)?,
                        state: row.get(2)?,
                    })),
                    None => Ok(None),
                }
            })
            .await
    }

    /// Moves `id` from `from` to `to` if it is still in `from`; whether it moved.
    async fn transition(&self, id: &str, from: &str, to: &str) -> bool {
        let (id, from, to, me) = (
            id.to_owned(),
            from.to_owned(),
            to.to_owned(),
            self.me.clone(),
        );
        let moved = self
            .db
            .run(move |db| {
                db.execute(
                    "UPDATE orders SET state = ?3, owner = ?4, updated_at = ?5
                     WHERE id = ?1 AND state = ?2",
                    rusqlite::params![id, from, to, me, now_ms()],
                )
            })
            .await;
        matches!(moved, Ok(1))
    }

    /// Runs the saga from `state` as far as it can go now; the state reached.
    async fn advance(&self, id: &str, amount: i64, mut state: &'static str) -> String {
        loop {
            let next = match state {
                "PENDING" | "PAYMENT_PENDING" => match self.charge(id, amount).await {
                    Ok(()) => "PAID",
                    Err(Declined) => "CANCELLED",
                    Err(Unreachable(reason)) => {
                        if state == "PENDING" {
                            tracing::info!(order = %id, %reason, "payment unavailable; order accepted, charge deferred");
                            metrics::counter!("demo_payment_deferred_total").increment(1);
                            self.transition(id, "PENDING", "PAYMENT_PENDING").await;
                        }
                        return "PAYMENT_PENDING".to_owned();
                    }
                },
                "PAID" => match self.call("delivery", "/deliveries", id, amount).await {
                    Ok(()) => "COMPLETED",
                    Err(Declined | Unreachable(_)) => "REFUNDING",
                },
                "REFUNDING" => match self.call("payment", "/refunds", id, amount).await {
                    Ok(()) => {
                        metrics::counter!("demo_compensations_total").increment(1);
                        "CANCELLED"
                    }
                    Err(_) => return state.to_owned(),
                },
                done => return done.to_owned(),
            };
            if !self.transition(id, state, next).await {
                // Someone else moved it (the reconciler of another instance): theirs now.
                return self
                    .state(id)
                    .await
                    .ok()
                    .flatten()
                    .map(|o| o.state)
                    .unwrap_or_default();
            }
            state = next;
        }
    }

    async fn charge(&self, id: &str, amount: i64) -> Result<(), Failure> {
        self.call("payment", "/charges", id, amount).await
    }

    /// A POST to `service` carrying the order id as idempotency key, so it may be retried.
    async fn call(&self, service: &str, path: &str, id: &str, amount: i64) -> Result<(), Failure> {
        let response = self
            .calls
            .post(service, path)
            .header("idempotency-key", id)
            .json(&serde_json::json!({"order_id": id, "amount": amount}))
            .retryable()
            .send()
            .await
            .map_err(|e: CallError| Unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
            Err(Declined)
        } else {
            Err(Unreachable(format!("{service} answered {status}")))
        }
    }
}

/// Why a step did not go through.
enum Failure {
    /// The service said no (4xx): the saga ends.
    Declined,
    /// The service could not be reached or failed: try again later.
    Unreachable(String),
}
use Failure::{Declined, Unreachable};

/// Finishes orders left half-done: this instance's own after 3 s without progress, any
/// instance's after 8 s (its owner is presumably gone).
async fn reconcile(saga: Saga) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let me = saga.me.clone();
        let open = saga
            .db
            .run(move |db| {
                let now = now_ms();
                let mut query = db.prepare(
                    "SELECT id, amount, state, updated_at FROM orders
                     WHERE state NOT IN ('COMPLETED', 'CANCELLED')
                       AND ((owner = ?1 AND updated_at < ?2) OR updated_at < ?3)
                     ORDER BY updated_at LIMIT 20",
                )?;
                let rows =
                    query.query_map(rusqlite::params![me, now - 3_000, now - 8_000], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, i64>(3)?,
                        ))
                    })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await
            .unwrap_or_default();
        for (id, amount, state, updated_at) in open {
            // Claim it: only the instance whose update lands goes on.
            let (claim_id, me) = (id.clone(), saga.me.clone());
            let claimed = saga
                .db
                .run(move |db| {
                    db.execute(
                        "UPDATE orders SET owner = ?2, updated_at = ?3 WHERE id = ?1 AND updated_at = ?4",
                        rusqlite::params![claim_id, me, now_ms(), updated_at],
                    )
                })
                .await;
            if !matches!(claimed, Ok(1)) {
                continue;
            }
            let state: &'static str = match state.as_str() {
                "PENDING" => "PENDING",
                "PAYMENT_PENDING" => "PAYMENT_PENDING",
                "PAID" => "PAID",
                "REFUNDING" => "REFUNDING",
                _ => continue,
            };
            let reached = saga.advance(&id, amount, state).await;
            tracing::debug!(order = %id, from = state, to = %reached, "reconciled");
        }
    }
}
