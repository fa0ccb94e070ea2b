//! The direct transport end to end: one service publishes in its transactions, two instances
//! of another (one database) apply each committed event once, in order per key; rolled-back
//! events never arrive; the trace continues across the hop.

use std::collections::HashMap;
use std::time::Duration;

use msakit_events::TraceContext;
use msakit_server_kit::testing::wait_until;

use crate::support::{
    Instance, Placed, Record, applied, assert_exactly_once_in_order, client, database,
    direct_events, place, quick_retries, registry,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_reach_every_instance_group_once_in_order_per_key() {
    let registry = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&registry);

    // Two instances of payment over one database, subscribed before they register.
    let payment_db = database(dir.path(), "payment.db").await;
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

    let order_db = database(dir.path(), "order.db").await;
    let order = direct_events(&client, &order_db, "order", "order-1", quick_retries(3)).await;

    // 20 keys x 10 events, interleaved; every third key also has a rolled-back event.
    let mut expected = HashMap::new();
    for n in 0..10 {
        for key in 0..20 {
            let key = format!("o-{key}");
            let id = place(&order, &key, n, true).await;
            expected.insert(id, (key.clone(), n));
            if n == 5 && key.ends_with('3') {
                place(&order, &format!("{key}-rolled-back"), n, false).await;
            }
        }
    }
    // One event with a trace of the caller's.
    let root = TraceContext::new_root();
    let mut tx = order_db.begin().await.unwrap();
    let placed = Placed {
        order: "traced".into(),
        n: 0,
        poison: false,
    };
    let traced = order
        .event("orders", "traced", &placed)
        .trace(root)
        .publish(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    expected.insert(traced.clone(), ("traced".into(), 0));

    wait_until(Duration::from_secs(60), || async {
        applied(&payment_db, "payment").await.len() >= expected.len()
    })
    .await;
    let effects = applied(&payment_db, "payment").await;
    assert_exactly_once_in_order(&effects, &expected);

    let trace_id: String = sqlx::query_scalar("SELECT trace_id FROM applied WHERE event_id = $1")
        .bind(&traced)
        .fetch_one(&payment_db)
        .await
        .unwrap();
    assert_eq!(
        trace_id,
        format!("{:032x}", root.trace_id()),
        "the trace spans the hop"
    );

    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM msakit_outbox")
        .fetch_one(&order_db)
        .await
        .unwrap();
    assert_eq!(left, 0, "the outbox is empty once relayed");

    order.shutdown().await;
    for (events, instance) in payments {
        instance.stop().await;
        events.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_a_subscriber_that_is_down_and_arrive_when_it_is_back() {
    let registry = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&registry);
    let payment_db = database(dir.path(), "payment.db").await;
    let events = direct_events(&client, &payment_db, "payment", "p-1", quick_retries(3)).await;
    events
        .subscribe("payment", "orders", Record::new("payment"))
        .await
        .unwrap();
    let instance = Instance::serve(&client, "payment", "p-1", &events).await;

    let order_db = database(dir.path(), "order.db").await;
    let order = direct_events(&client, &order_db, "order", "order-1", quick_retries(3)).await;
    let mut expected = HashMap::new();
    let first = place(&order, "o-1", 0, true).await;
    expected.insert(first, ("o-1".to_owned(), 0));
    wait_until(Duration::from_secs(30), || async {
        applied(&payment_db, "payment").await.len() == 1
    })
    .await;

    // The only payment instance leaves; events published meanwhile wait in the log.
    instance.stop().await;
    events.shutdown().await;
    for n in 1..20 {
        let id = place(&order, "o-1", n, true).await;
        expected.insert(id, ("o-1".to_owned(), n));
    }
    let events = direct_events(&client, &payment_db, "payment", "p-2", quick_retries(3)).await;
    events
        .subscribe("payment", "orders", Record::new("payment"))
        .await
        .unwrap();
    let instance = Instance::serve(&client, "payment", "p-2", &events).await;
    wait_until(Duration::from_secs(60), || async {
        applied(&payment_db, "payment").await.len() >= expected.len()
    })
    .await;
    assert_exactly_once_in_order(&applied(&payment_db, "payment").await, &expected);

    order.shutdown().await;
    instance.stop().await;
    events.shutdown().await;
}
