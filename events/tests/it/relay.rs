//! The relay: one publishes per database at a time; a relay that stops right after commits
//! leaves its events to the next, which publishes each of them.

use std::collections::HashMap;
use std::time::Duration;

use msakit_server_kit::testing::wait_until;
use sqlx::Row;

use crate::support::{
    Instance, Record, applied, assert_exactly_once_in_order, client, database, direct_events,
    place, quick_retries, registry,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_holds_the_lease_and_the_next_takes_over_what_the_last_left() {
    let registry = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&registry);
    let payment_db = database(dir.path(), "payment.db").await;
    let payment = direct_events(&client, &payment_db, "payment", "p-1", quick_retries(3)).await;
    payment
        .subscribe("payment", "orders", Record::new("payment"))
        .await
        .unwrap();
    let instance = Instance::serve(&client, "payment", "p-1", &payment).await;

    // Two instances of order share a database: one relay holds the lease.
    let order_db = database(dir.path(), "order.db").await;
    let first = direct_events(&client, &order_db, "order", "order-1", quick_retries(3)).await;
    let second = direct_events(&client, &order_db, "order", "order-2", quick_retries(3)).await;
    wait_until(Duration::from_secs(10), || async {
        sqlx::query("SELECT holder FROM msakit_relay_lease")
            .fetch_optional(&order_db)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let holder: String = sqlx::query("SELECT holder FROM msakit_relay_lease")
        .fetch_one(&order_db)
        .await
        .unwrap()
        .get(0);
    let (holding, other) = if holder == "order-1" {
        (first, second)
    } else {
        (second, first)
    };

    // Events committed through both instances; then the holder stops right after a burst of
    // commits, before it can have relayed them all.
    let mut expected = HashMap::new();
    for n in 0..50 {
        let key = format!("o-{}", n % 5);
        let id = place(if n % 2 == 0 { &holding } else { &other }, &key, n, true).await;
        expected.insert(id, (key, n));
    }
    holding.shutdown().await;
    for n in 50..100 {
        let key = format!("o-{}", n % 5);
        let id = place(&other, &key, n, true).await;
        expected.insert(id, (key, n));
    }

    wait_until(Duration::from_secs(60), || async {
        applied(&payment_db, "payment").await.len() >= expected.len()
    })
    .await;
    assert_exactly_once_in_order(&applied(&payment_db, "payment").await, &expected);
    // An event over the size limit is refused before anything is written.
    let mut tx = order_db.begin().await.unwrap();
    let huge = crate::support::Placed {
        order: "x".repeat(msakit_events::MAX_ENVELOPE_BYTES),
        n: 0,
        poison: false,
    };
    let refused = other.publish(&mut tx, "orders", "huge", &huge).await;
    assert!(
        matches!(refused, Err(msakit_events::EventsError::TooLarge { .. })),
        "{refused:?}"
    );
    tx.rollback().await.unwrap();

    other.shutdown().await;
    instance.stop().await;
    payment.shutdown().await;
}
