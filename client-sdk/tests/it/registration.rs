//! Registration: registers, heartbeats, re-registers after a registry restart, deregisters.

use std::time::Duration;

use msakit::{Client, RegistrationOptions};
use msakit_api::registry::InstanceStatus;

use crate::support::{registry, wait_until};

async fn ids(url: &str) -> Vec<String> {
    let body: serde_json::Value = reqwest::get(format!("{url}/v1/services/orders"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn registers_heartbeats_survives_a_registry_restart_and_deregisters() {
    let server = registry(None).await;
    let url = server.url();
    let client = Client::builder().registry_url(url.clone()).build().unwrap();
    let options = RegistrationOptions::new("orders", "orders-1", "127.0.0.1", 8080)
        .lease(Duration::from_millis(1200));
    let registration = client.registration(options).unwrap();
    tokio::time::timeout(Duration::from_secs(5), registration.registered())
        .await
        .unwrap();
    assert_eq!(ids(&url).await, ["orders-1"]);

    // Heartbeats keep a 1.2 s lease alive well past its length.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(ids(&url).await, ["orders-1"]);

    // A status change reaches the registry at once.
    registration.set_status(InstanceStatus::OutOfService);
    wait_until(Duration::from_secs(5), || async {
        let body: serde_json::Value =
            reqwest::get(format!("{url}/v1/services/orders/instances/orders-1"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        body["status"] == "OUT_OF_SERVICE"
    })
    .await;
    registration.set_status(InstanceStatus::Up);

    // The registry restarts empty: the next heartbeat gets 404 and the instance registers again.
    let addr = server.addr;
    server.stop().await;
    let server = registry(Some(addr)).await;
    wait_until(Duration::from_secs(5), || async {
        ids(&url).await == ["orders-1"]
    })
    .await;

    registration.shutdown().await;
    assert!(ids(&url).await.is_empty(), "deregistered on shutdown");
    server.stop().await;
}
