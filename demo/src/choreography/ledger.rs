//! What the choreographed run is checked against, read from the three services' databases
//! once traffic has stopped: every order settled, each with the effects its amount calls for,
//! none twice; each order's events applied in the order published; no dead letters and nothing
//! left in an outbox.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use sqlx::{AnyPool, Row};

use super::{declined, undeliverable};

/// The effects of one order across the services.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Effects {
    charges: i64,
    declines: i64,
    refunds: i64,
    deliveries: i64,
    failures: i64,
}

impl Effects {
    /// What an order of `amount` must end with.
    fn expected(amount: i64) -> Self {
        if declined(amount) {
            Self {
                declines: 1,
                ..Self::default()
            }
        } else if undeliverable(amount) {
            Self {
                charges: 1,
                failures: 1,
                refunds: 1,
                ..Self::default()
            }
        } else {
            Self {
                charges: 1,
                deliveries: 1,
                ..Self::default()
            }
        }
    }

    fn twice(self) -> bool {
        [
            self.charges,
            self.declines,
            self.refunds,
            self.deliveries,
            self.failures,
        ]
        .iter()
        .any(|n| *n > 1)
    }
}

/// What the databases say.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Orders in order's database.
    pub(crate) orders: usize,
    /// Orders not COMPLETED or CANCELLED.
    pub(crate) unsettled: Vec<String>,
    /// Orders whose state or effects differ from what their amount calls for.
    pub(crate) wrong: Vec<String>,
    /// Orders with an effect applied more than once.
    pub(crate) twice: Vec<String>,
    /// Events applied out of their order's publishing order.
    pub(crate) out_of_order: Vec<String>,
    /// Dead letters across the services.
    pub(crate) dead_letters: i64,
    /// Events still in an outbox.
    pub(crate) in_outboxes: i64,
    /// Accepted orders (201/200 to the client) missing from order's database.
    pub(crate) accepted_missing: Vec<String>,
    /// Settle time (final state − accepted) of settled orders, ms, sorted.
    pub(crate) settle_ms: Vec<i64>,
}

async fn open(dir: &Path, name: &str) -> anyhow::Result<AnyPool> {
    let url = format!("sqlite://{}?mode=rwc", dir.join(name).display());
    Ok(msakit_events::connect(&url).await?)
}

/// Counts of `table` rows per order.
async fn counts(pool: &AnyPool, table: &str) -> anyhow::Result<HashMap<String, i64>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT order_id, COUNT(*) FROM {table} GROUP BY order_id"
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The orders' states: (id → (amount, state, settle ms)).
pub(crate) async fn states(dir: &Path) -> anyhow::Result<BTreeMap<String, (i64, String, i64)>> {
    let order = open(dir, super::scenario::ORDER_DB).await?;
    let rows = sqlx::query("SELECT id, amount, state, updated_at - created_at FROM orders")
        .fetch_all(&order)
        .await?;
    order.close().await;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect())
}

/// Events published so far: each order's `OrderPlaced`, and one event per effect of payment
/// and delivery (each publishes one with each effect, in its transaction).
pub(crate) async fn published(dir: &Path) -> anyhow::Result<u64> {
    use super::scenario::{DELIVERY_DB, ORDER_DB, PAYMENT_DB};
    let mut total = 0;
    for (db, tables) in [
        (ORDER_DB, &["orders"][..]),
        (PAYMENT_DB, &["charges", "declines", "refunds"][..]),
        (DELIVERY_DB, &["deliveries", "failures"][..]),
    ] {
        let pool = open(dir, db).await?;
        for table in tables {
            let count: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&pool)
                    .await?;
            total += count as u64;
        }
        pool.close().await;
    }
    Ok(total)
}

/// Reads the three databases.
pub(crate) async fn check(dir: &Path, accepted: &[String]) -> anyhow::Result<Findings> {
    use super::scenario::{DELIVERY_DB, ORDER_DB, PAYMENT_DB};
    let orders = states(dir).await?;
    let payment = open(dir, PAYMENT_DB).await?;
    let delivery = open(dir, DELIVERY_DB).await?;
    let charges = counts(&payment, "charges").await?;
    let declines = counts(&payment, "declines").await?;
    let refunds = counts(&payment, "refunds").await?;
    let deliveries = counts(&delivery, "deliveries").await?;
    let failures = counts(&delivery, "failures").await?;
    let mut findings = Findings {
        orders: orders.len(),
        ..Findings::default()
    };
    for (id, (amount, state, settle_ms)) in &orders {
        let count = |m: &HashMap<String, i64>| m.get(id).copied().unwrap_or(0);
        let effects = Effects {
            charges: count(&charges),
            declines: count(&declines),
            refunds: count(&refunds),
            deliveries: count(&deliveries),
            failures: count(&failures),
        };
        let final_state = if declined(*amount) || undeliverable(*amount) {
            "CANCELLED"
        } else {
            "COMPLETED"
        };
        if state != "COMPLETED" && state != "CANCELLED" {
            findings.unsettled.push(id.clone());
        } else {
            findings.settle_ms.push(*settle_ms);
            if effects.twice() {
                findings.twice.push(format!("{id} {effects:?}"));
            } else if effects != Effects::expected(*amount) || state != final_state {
                findings
                    .wrong
                    .push(format!("{id} amount {amount} {state} {effects:?}"));
            }
        }
    }
    // Effects of orders order never had.
    for table in [&charges, &declines, &refunds, &deliveries, &failures] {
        for id in table.keys().filter(|id| !orders.contains_key(*id)) {
            findings
                .wrong
                .push(format!("{id}: effects of an unknown order"));
        }
    }
    findings.settle_ms.sort_unstable();
    let order = open(dir, ORDER_DB).await?;
    for pool in [&order, &payment, &delivery] {
        let trail = sqlx::query("SELECT order_id, topic, step FROM trail ORDER BY rowid")
            .fetch_all(pool)
            .await?;
        let mut last: HashMap<(String, String), i64> = HashMap::new();
        for row in &trail {
            let (order_id, topic, step): (String, String, i64) =
                (row.get(0), row.get(1), row.get(2));
            if let Some(previous) = last.insert((order_id.clone(), topic.clone()), step)
                && step <= previous
            {
                findings.out_of_order.push(format!(
                    "{order_id} on {topic}: step {step} after {previous}"
                ));
            }
        }
        findings.dead_letters +=
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM msakit_dead_letter")
                .fetch_one(pool)
                .await?;
        findings.in_outboxes += sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM msakit_outbox")
            .fetch_one(pool)
            .await?;
    }
    findings.accepted_missing = accepted
        .iter()
        .filter(|id| !orders.contains_key(*id))
        .cloned()
        .collect();
    for pool in [order, payment, delivery] {
        pool.close().await;
    }
    Ok(findings)
}
