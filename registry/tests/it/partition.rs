//! A registry cluster under a real network partition (Linux network namespaces, as in the
//! config server's test): the isolated leader refuses registrations with a 503 naming the leader
//! it knows and flags its reads stale; the majority elects a leader and takes registrations;
//! healed, every node lists the same instances and the refused registration is nowhere.
//!
//! Needs root, so it is `#[ignore]`d in `cargo test --workspace` and run by `.ci/run`.

use std::path::Path;
use std::time::{Duration, Instant};

use msakit_raft::testing::{Net, leader_among};
use serde_json::{Value, json};

async fn register(client: &reqwest::Client, url: &str, id: &str) -> reqwest::Response {
    client
        .put(format!("{url}/v1/services/orders/instances/{id}"))
        .json(&json!({"host": "10.0.0.1", "port": 8080, "lease_ttl_ms": 120_000}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root for network namespaces; run by .ci/run"]
async fn an_isolated_registry_leader_refuses_registrations_and_healing_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new(8761, 1);
    net.start(
        Path::new(env!("CARGO_BIN_EXE_msakit-registry")),
        dir.path(),
        &[],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let old = leader_among(&client, &net, &[1, 2, 3]).await;
    assert_eq!(
        register(&client, &net.url(old), "before").await.status(),
        200
    );

    net.isolate(old, false);
    let cut = Instant::now();
    let majority: Vec<usize> = (1..=3).filter(|i| *i != old).collect();
    let new = leader_among(&client, &net, &majority).await;
    let elected = cut.elapsed();
    assert_ne!(new, old);
    let other = *majority.iter().find(|i| **i != new).unwrap();
    assert_eq!(
        register(&client, &net.url(other), "majority")
            .await
            .status(),
        200
    );

    // The old leader refuses, naming a leader; its reads still answer, flagged stale.
    let refused = register(&client, &net.url(old), "minority").await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    let code = body["error"]["code"].as_str().unwrap().to_owned();
    assert!(code == "no_quorum" || code == "not_leader", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("leader"),
        "{body}"
    );
    let read = client
        .get(format!("{}/v1/services/orders", net.url(old)))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["x-msakit-stale"], "true");
    // Cut off for longer than the quorum timeout, it refuses heartbeats too, so instances turn
    // to a node the majority hears.
    let heartbeat = |i: usize| {
        client
            .put(format!(
                "{}/v1/services/orders/instances/before/heartbeat",
                net.url(i)
            ))
            .send()
    };
    assert_eq!(heartbeat(old).await.unwrap().status(), 503);
    assert_eq!(heartbeat(other).await.unwrap().status(), 200);

    // Healed: the same instances everywhere, without the refused one.
    net.isolate(old, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 1..=3 {
        loop {
            let listed = crate::cluster::ids(&client, &net.url(i), "orders").await;
            if listed.as_deref() == Some(&["before".to_owned(), "majority".to_owned()][..]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not converge: {listed:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "isolated registry leader {old}: node {new} elected after {:.2} s",
        elected.as_secs_f64()
    );
}
