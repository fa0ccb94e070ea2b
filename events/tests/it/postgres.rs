//! The same guarantees on PostgreSQL (`MSAKIT_POSTGRES=postgres://…`; `.ci/run` starts a
//! throwaway server with `events/postgres/start`). Skipped, with a message, without one.

use std::collections::HashMap;
use std::time::Duration;

use msakit_server_kit::testing::wait_until;

use crate::support::{
    Instance, Record, applied, assert_exactly_once_in_order, client, database_at, direct_events,
    place, quick_retries, registry,
};

/// A fresh database on the server `MSAKIT_POSTGRES` names, and its URL.
async fn fresh_database(admin: &str, name: &str) -> String {
    let pool = msakit_events::connect(admin).await.unwrap();
    let database = format!("msakit_{name}_{:08x}", fastrand::u32(..));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (server, _) = admin.rsplit_once('/').unwrap();
    format!("{server}/{database}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_committed_events_are_applied_once_in_order_and_rolled_back_ones_never() {
    let Some(admin) = std::env::var("MSAKIT_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "skipped: no PostgreSQL (set MSAKIT_POSTGRES=postgres://…; `bash events/postgres/start DIR PORT` starts one)"
        );
        return;
    };
    let registry = registry().await;
    let client = client(&registry);
    let payment_db = database_at(&fresh_database(&admin, "payment").await).await;
    let mut payments = Vec::new();
    for id in ["payment-1", "payment-2"] {
        let events = direct_events(&client, &payment_db, "payment", id, quick_retries(3)).await;
        events
            .subscribe("payment", "orders", Record::new("payment"))
            .await
            .unwrap();
        let instance = Instance::serve(&client, "payment", id, &events).await;
        payments.push((events, instance));
    }
    let order_db = database_at(&fresh_database(&admin, "order").await).await;
    // Two order instances: one relay holds the lease.
    let first = direct_events(&client, &order_db, "order", "order-1", quick_retries(3)).await;
    let second = direct_events(&client, &order_db, "order", "order-2", quick_retries(3)).await;

    let mut expected = HashMap::new();
    for n in 0..20 {
        for key in 0..10 {
            let key = format!("o-{key}");
            let publisher = if n % 2 == 0 { &first } else { &second };
            let id = place(publisher, &key, n, true).await;
            expected.insert(id, (key.clone(), n));
            if key == "o-3" {
                place(publisher, "rolled-back", n, false).await;
            }
        }
    }
    wait_until(Duration::from_secs(60), || async {
        applied(&payment_db, "payment").await.len() >= expected.len()
    })
    .await;
    assert_exactly_once_in_order(&applied(&payment_db, "payment").await, &expected);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM msakit_outbox")
        .fetch_one(&order_db)
        .await
        .unwrap();
    assert_eq!(left, 0);

    first.shutdown().await;
    second.shutdown().await;
    for (events, instance) in payments {
        instance.stop().await;
        events.shutdown().await;
    }
}
