//! Network partitions, for real: three `msakit-config-server` processes, each in a Linux network
//! namespace of its own, joined by veth pairs to a bridge the test owns. Cutting the leader off
//! (blackhole routes between it and the others; the test itself still reaches every node): the
//! majority elects a new leader and takes writes, the old leader refuses them with a 503 naming
//! the leader it knows and keeps serving stale reads; healed, every node converges.
//!
//! Needs root (`ip netns`, `ip link`), so it is `#[ignore]`d in `cargo test --workspace` and run
//! by `.ci/run` (as root) with `--ignored`; it fails, rather than passes, when it cannot set up.

use std::path::Path;
use std::time::{Duration, Instant};

use msakit_raft::testing::{Net, leader_among};
use serde_json::Value;

async fn put(client: &reqwest::Client, url: &str, value: &str) -> reqwest::Response {
    client
        .put(format!("{url}/v1/config/orders/default/main"))
        .header("content-type", "application/yaml")
        .body(format!("value: {value}\n"))
        .send()
        .await
        .unwrap()
}

async fn stale_value(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client
        .get(format!("{url}/v1/resolve/orders/default/main"))
        .header("x-msakit-consistency", "stale")
        .send()
        .await
        .ok()?;
    let resolved: Value = response.json().await.ok()?;
    resolved["properties"]["value"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root for network namespaces; run by .ci/run"]
async fn an_isolated_leader_refuses_writes_the_majority_goes_on_and_healing_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new(8888, 0);
    net.start(
        Path::new(env!("CARGO_BIN_EXE_msakit-config-server")),
        dir.path(),
        &[],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let old = leader_among(&client, &net, &[1, 2, 3]).await;
    assert!(
        put(&client, &net.url(old), "before")
            .await
            .status()
            .is_success()
    );

    net.isolate(old, false);
    let cut = Instant::now();
    let majority: Vec<usize> = (1..=3).filter(|i| *i != old).collect();
    let new = leader_among(&client, &net, &majority).await;
    let elected = cut.elapsed();
    assert_ne!(new, old);

    // The majority takes writes, through its leader or the other member.
    assert!(
        put(&client, &net.url(new), "majority-1")
            .await
            .status()
            .is_success()
    );
    let other = *majority.iter().find(|i| **i != new).unwrap();
    assert!(
        put(&client, &net.url(other), "majority-2")
            .await
            .status()
            .is_success()
    );

    // The old leader refuses, naming the leader it knows; its linearizable reads fail too, and
    // its stale reads still answer (with the old value), flagged as such.
    let refused = put(&client, &net.url(old), "minority").await;
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
        .get(format!("{}/v1/resolve/orders/default/main", net.url(old)))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 503, "no linearizable read without a quorum");
    assert_eq!(
        stale_value(&client, &net.url(old)).await.as_deref(),
        Some("before")
    );

    // Healed: every node converges on the majority's last write; the refused one is nowhere.
    net.isolate(old, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 1..=3 {
        while stale_value(&client, &net.url(i)).await.as_deref() != Some("majority-2") {
            assert!(Instant::now() < deadline, "node {i} did not converge");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let leader = leader_among(&client, &net, &[1, 2, 3]).await;
    let history: Value = client
        .get(format!(
            "{}/v1/config/orders/default/main/history",
            net.url(leader)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(
        versions.len(),
        3,
        "before, majority-1, majority-2 — and not the refused write"
    );
    println!(
        "isolated leader {old}: node {new} elected after {:.2} s",
        elected.as_secs_f64()
    );
}
