//! The Kafka transport against a real broker (`MSAKIT_KAFKA=host:port`; `.ci/run` starts one
//! from Maven Central's jars with `events/kafka/start`). Skipped, with a message, without one.

use std::collections::HashMap;
use std::time::Duration;

use msakit_events::{Events, Transport};
use msakit_server_kit::testing::wait_until;

use crate::support::{
    Record, applied, assert_exactly_once_in_order, database, place, place_on, quick_retries,
};

fn broker() -> Option<String> {
    let broker = std::env::var("MSAKIT_KAFKA").ok().filter(|b| !b.is_empty());
    if broker.is_none() {
        eprintln!(
            "skipped: no Kafka broker (set MSAKIT_KAFKA=host:port; `bash events/kafka/start DIR PORT` starts one)"
        );
    }
    broker
}

async fn kafka_events(
    pool: &msakit_events::AnyPool,
    service: &str,
    instance: &str,
    broker: &str,
) -> Events {
    Events::builder(pool.clone(), service)
        .instance(instance)
        .transport(Transport::kafka(broker))
        .retry(quick_retries(3))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_apply_every_event_once_in_order_while_a_member_leaves() {
    let Some(broker) = broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A fresh topic name per run: the broker keeps what earlier runs wrote.
    let topic = format!("orders-{:08x}", fastrand::u32(..));

    // payment: two members over one database; audit: one member, its own database.
    let payment_db = database(dir.path(), "payment.db").await;
    let audit_db = database(dir.path(), "audit.db").await;
    let payment_1 = kafka_events(&payment_db, "payment", "payment-1", &broker).await;
    let payment_2 = kafka_events(&payment_db, "payment", "payment-2", &broker).await;
    let audit = kafka_events(&audit_db, "audit", "audit-1", &broker).await;
    for events in [&payment_1, &payment_2] {
        events
            .subscribe("payment", &topic, Record::new("payment"))
            .await
            .unwrap();
    }
    audit
        .subscribe("audit", &topic, Record::new("audit"))
        .await
        .unwrap();

    let order_db = database(dir.path(), "order.db").await;
    let order = kafka_events(&order_db, "order", "order-1", &broker).await;
    let mut expected = HashMap::new();
    for n in 0..300 {
        let key = format!("o-{}", n % 10);
        let id = place_on(&order, &topic, &key, n, true).await;
        expected.insert(id, (key, n));
        if n == 150 {
            // One payment member leaves mid-stream; the other takes its partitions over.
            payment_1.shutdown().await;
        }
        // A rolled-back event never leaves the outbox.
        if n % 50 == 0 {
            place(&order, "rolled-back", n, false).await;
        }
    }

    wait_until(Duration::from_secs(90), || async {
        applied(&payment_db, "payment").await.len() >= expected.len()
            && applied(&audit_db, "audit").await.len() >= expected.len()
    })
    .await;
    assert_exactly_once_in_order(&applied(&payment_db, "payment").await, &expected);
    assert_exactly_once_in_order(&applied(&audit_db, "audit").await, &expected);

    order.shutdown().await;
    payment_2.shutdown().await;
    audit.shutdown().await;
}
