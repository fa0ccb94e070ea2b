//! Discovery: a watch-driven cache that keeps serving when the registry is gone.

use std::time::Duration;

use msakit::Client;

use crate::support::{registry, wait_until};

async fn register(url: &str, id: &str, port: u16, zone: &str) {
    let response = reqwest::Client::new()
        .put(format!("{url}/v1/services/payment/instances/{id}"))
        .json(&serde_json::json!({"host": "127.0.0.1", "port": port, "zone": zone}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

#[tokio::test]
async fn follows_changes_and_survives_the_registry_going_away() {
    let metrics = crate::support::metrics();
    let server = registry(None).await;
    let url = server.url();
    register(&url, "pay-1", 9001, "eu-1").await;
    register(&url, "pay-2", 9002, "us-1").await;

    let client = Client::builder()
        .registry_url(url.clone())
        .zone("eu-1")
        .build()
        .unwrap();
    let discovery = client.discovery().unwrap();
    assert_eq!(discovery.instances("payment").await.unwrap().len(), 2);
    let local = discovery.available("payment").await.unwrap();
    assert_eq!(local.len(), 1, "same zone first");
    assert_eq!(local[0].id, "pay-1");

    // A new instance arrives through the watch, without asking.
    register(&url, "pay-3", 9003, "eu-1").await;
    wait_until(Duration::from_secs(5), || async {
        discovery.instances("payment").await.unwrap().len() == 3
    })
    .await;
    wait_until(Duration::from_secs(5), || async {
        discovery.staleness("payment") == Some((Duration::ZERO, true))
    })
    .await;

    // A drained instance leaves the available set.
    reqwest::Client::new()
        .put(format!("{url}/v1/services/payment/instances/pay-1/status"))
        .json(&serde_json::json!({"status": "OUT_OF_SERVICE"}))
        .send()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), || async {
        let available = discovery.available("payment").await.unwrap();
        available.len() == 1 && available[0].id == "pay-3"
    })
    .await;

    // The registry goes away: lookups keep answering from the cache, at once.
    server.stop().await;
    wait_until(Duration::from_secs(5), || async {
        discovery
            .staleness("payment")
            .is_some_and(|(_, live)| !live)
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(discovery.instances("payment").await.unwrap().len(), 3);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "answered from the cache, not the registry"
    );
    // A service never seen before cannot be found.
    assert!(discovery.instances("unknown").await.is_err());
    // And the metrics say the cache is no longer confirmed.
    let exported = metrics.render();
    assert!(
        exported.contains(r#"msakit_discovery_watch_connected{service="payment"} 0"#)
            && exported.contains(r#"msakit_discovery_cache_age_seconds{service="payment"}"#),
        "{exported}"
    );
}

#[tokio::test]
async fn starts_from_the_disk_cache_while_the_registry_is_down() {
    let cache = tempfile::tempdir().unwrap();
    let server = registry(None).await;
    let url = server.url();
    register(&url, "pay-1", 9001, "eu-1").await;
    let client = || {
        Client::builder()
            .registry_url(url.clone())
            .discovery_cache_dir(cache.path())
            .build()
            .unwrap()
    };
    {
        let discovery = client().discovery().unwrap();
        assert_eq!(discovery.instances("payment").await.unwrap().len(), 1);
    }
    server.stop().await;
    // A new process (a new cache) with the registry gone starts from the disk.
    let discovery = client().discovery().unwrap();
    let instances = discovery.instances("payment").await.unwrap();
    assert_eq!(instances[0].id, "pay-1");
}
