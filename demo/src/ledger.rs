//! The invariants checked across the services' own databases once the run is over: every order
//! final, no accepted order lost, charges − refunds = completed orders, no double charge.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;

/// What the databases hold.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Order id → (state, amount).
    pub(crate) orders: HashMap<String, (String, i64)>,
    /// Order id → amount charged.
    pub(crate) charges: HashMap<String, i64>,
    /// Order id → amount refunded.
    pub(crate) refunds: HashMap<String, i64>,
    /// Charge rows (more than `charges.len()` would be a double charge).
    pub(crate) charge_rows: usize,
}

impl Ledger {
    /// Reads the order and payment databases in `dir`.
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Self> {
        let open = |name: &str| {
            rusqlite::Connection::open_with_flags(
                dir.join(name),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .with_context(|| format!("opening {name}"))
        };
        let orders_db = open("order.db")?;
        let payment_db = open("payment.db")?;
        let mut ledger = Ledger::default();
        let mut query = orders_db.prepare("SELECT id, state, amount FROM orders")?;
        for row in query.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))? {
            let (id, entry): (String, (String, i64)) = row?;
            ledger.orders.insert(id, entry);
        }
        let mut query = payment_db.prepare("SELECT order_id, amount FROM charges")?;
        for row in query.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (id, amount) = row?;
            ledger.charge_rows += 1;
            ledger.charges.insert(id, amount);
        }
        let mut query = payment_db.prepare("SELECT order_id, amount FROM refunds")?;
        for row in query.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (id, amount) = row?;
            ledger.refunds.insert(id, amount);
        }
        Ok(ledger)
    }

    /// Ids of the orders `owner` was working on (not yet COMPLETED or CANCELLED).
    pub(crate) fn in_flight_of(dir: &Path, owner: &str) -> anyhow::Result<Vec<String>> {
        let db = rusqlite::Connection::open_with_flags(
            dir.join("order.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .context("opening order.db")?;
        let mut query = db.prepare(
            "SELECT id FROM orders WHERE owner = ?1 AND state NOT IN ('COMPLETED', 'CANCELLED')",
        )?;
        let ids = query.query_map([owner], |r| r.get::<_, String>(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// Orders not yet COMPLETED or CANCELLED.
    pub(crate) fn open_orders(&self) -> usize {
        self.orders
            .values()
            .filter(|(state, _)| !crate::services::order::FINAL_STATES.contains(&state.as_str()))
            .count()
    }

    /// Each invariant: what it says, what was measured, whether it held.
    pub(crate) fn check(&self, accepted: &HashSet<String>) -> Vec<(String, String, bool)> {
        let completed: Vec<(&String, i64)> = self
            .orders
            .iter()
            .filter(|(_, (s, _))| s == "COMPLETED")
            .map(|(id, (_, a))| (id, *a))
            .collect();
        let cancelled = self
            .orders
            .values()
            .filter(|(s, _)| s == "CANCELLED")
            .count();
        let lost: Vec<&String> = accepted
            .iter()
            .filter(|id| !self.orders.contains_key(*id))
            .collect();
        let charged: i64 = self.charges.values().sum();
        let refunded: i64 = self.refunds.values().sum();
        let paid: i64 = completed.iter().map(|(_, a)| a).sum();
        let completed_uncharged = completed
            .iter()
            .filter(|(id, _)| !self.charges.contains_key(*id))
            .count();
        let refunded_completed = completed
            .iter()
            .filter(|(id, _)| self.refunds.contains_key(*id))
            .count();
        let cancelled_kept_money = self
            .orders
            .iter()
            .filter(|(id, (s, _))| {
                s == "CANCELLED"
                    && self.charges.contains_key(*id)
                    && !self.refunds.contains_key(*id)
            })
            .count();
        vec![
            (
                "every order is COMPLETED or CANCELLED".to_owned(),
                format!(
                    "{} orders: {} completed, {cancelled} cancelled, {} open",
                    self.orders.len(),
                    completed.len(),
                    self.open_orders()
                ),
                self.open_orders() == 0,
            ),
            (
                "no accepted order is lost".to_owned(),
                format!(
                    "{} orders answered 2xx, {} missing from order's database",
                    accepted.len(),
                    lost.len()
                ),
                lost.is_empty(),
            ),
            (
                "charges − refunds = completed orders".to_owned(),
                format!(
                    "{charged} − {refunded} = {} vs {paid} paid; {completed_uncharged} completed without charge, {refunded_completed} completed but refunded, {cancelled_kept_money} cancelled but charged",
                    charged - refunded
                ),
                charged - refunded == paid
                    && completed_uncharged == 0
                    && refunded_completed == 0
                    && cancelled_kept_money == 0,
            ),
            (
                "no order charged twice".to_owned(),
                format!(
                    "{} charge rows for {} orders",
                    self.charge_rows,
                    self.charges.len()
                ),
                self.charge_rows == self.charges.len(),
            ),
        ]
    }
}
