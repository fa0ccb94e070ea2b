//! Register, heartbeat, deregister, override and look up through the native API.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::support::{TestServer, fast_config, wait_until};

#[tokio::test]
async fn register_lookup_override_deregister() {
    let server = TestServer::start(fast_config()).await;
    let response = server
        .register(
            "orders",
            "orders-1",
            json!({"host": "10.0.0.1", "port": 8080, "zone": "eu-1", "metadata": {"version": "1.2"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let index: u64 = response.headers()["x-msakit-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let granted: serde_json::Value = response.json().await.unwrap();
    assert_eq!(granted["lease"]["ttl_ms"], 15_000);
    assert_eq!(granted["lease"]["renew_interval_ms"], 5_000);
    assert_eq!(granted["instance"]["status"], "UP");
    assert_eq!(granted["instance"]["modify_index"], index);
    server.up("orders", "orders-2", 8081, 15_000).await;

    let list = server.get_json("/v1/services").await;
    assert_eq!(list["services"][0]["name"], "orders");
    assert_eq!(list["services"][0]["instances"], 2);
    assert_eq!(list["services"][0]["by_status"]["UP"], 2);

    // Drain one: the operator's override wins over what the instance reports.
    let response = server
        .client
        .put(server.at("/v1/services/orders/instances/orders-1/status"))
        .json(&json!({"status": "OUT_OF_SERVICE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let up = server.get_json("/v1/services/orders?status=UP").await;
    assert_eq!(up["instances"].as_array().unwrap().len(), 1);
    assert_eq!(up["instances"][0]["id"], "orders-2");
    let zone = server.get_json("/v1/services/orders?zone=eu-1").await;
    assert_eq!(zone["instances"][0]["id"], "orders-1");
    assert_eq!(zone["instances"][0]["status"], "OUT_OF_SERVICE");
    assert_eq!(zone["instances"][0]["reported_status"], "UP");

    // Re-registering keeps the override; clearing it restores the reported status.
    server.up("orders", "orders-1", 8080, 15_000).await;
    let one = server
        .get_json("/v1/services/orders/instances/orders-1")
        .await;
    assert_eq!(one["status"], "OUT_OF_SERVICE");
    server
        .client
        .put(server.at("/v1/services/orders/instances/orders-1/status"))
        .json(&json!({"status": null}))
        .send()
        .await
        .unwrap();
    let one = server
        .get_json("/v1/services/orders/instances/orders-1")
        .await;
    assert_eq!(one["status"], "UP");

    let response = server
        .client
        .delete(server.at("/v1/services/orders/instances/orders-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(server.instance_ids("orders").await, ["orders-2"]);
    let again = server
        .client
        .delete(server.at("/v1/services/orders/instances/orders-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_of_an_unknown_lease_is_404_so_the_client_registers_again() {
    let server = TestServer::start(fast_config()).await;
    assert_eq!(server.heartbeat("orders", "ghost").await, 404);
    let body: serde_json::Value = server
        .client
        .put(server.at("/v1/services/orders/instances/ghost/heartbeat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], "unknown_instance");
    server.up("orders", "ghost", 1, 15_000).await;
    assert_eq!(server.heartbeat("orders", "ghost").await, 200);
    server.stop().await;
}

#[tokio::test]
async fn namespaces_keep_dev_and_prod_apart() {
    let server = TestServer::start(fast_config()).await;
    let response = server
        .client
        .put(server.at("/v1/services/orders/instances/1?namespace=dev"))
        .json(&json!({"host": "h", "port": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        server.instance_ids("orders").await.is_empty(),
        "public sees nothing"
    );
    let dev = server.get_json("/v1/services/orders?namespace=dev").await;
    assert_eq!(dev["instances"].as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_kept_lookup_shows_every_change_at_once_and_a_renewal_within_a_second() {
    let server = TestServer::start(fast_config()).await;
    server.up("orders", "orders-1", 8080, 15_000).await;
    let lookup = || async {
        let response = server
            .client
            .get(server.at("/v1/services/orders"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let index: u64 = response.headers()["x-msakit-index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["index"], index, "header and body name the same index");
        body
    };
    let first = lookup().await;
    assert_eq!(first["instances"].as_array().unwrap().len(), 1);
    assert_eq!(lookup().await, first, "kept: the same answer again");

    // A change is in the very next answer.
    server.up("orders", "orders-2", 8081, 15_000).await;
    let second = lookup().await;
    assert_eq!(second["instances"].as_array().unwrap().len(), 2);
    assert!(second["index"].as_u64() > first["index"].as_u64());
    server
        .client
        .put(server.at("/v1/services/orders/instances/orders-1/status"))
        .json(&json!({"status": "OUT_OF_SERVICE"}))
        .send()
        .await
        .unwrap();
    let third = lookup().await;
    let orders_1 = |body: &serde_json::Value| {
        body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == "orders-1")
            .cloned()
            .unwrap()
    };
    assert_eq!(orders_1(&third)["status"], "OUT_OF_SERVICE");

    // A renewal moves no index; the lookup shows it once its kept answer is a second old.
    let kept_renewal = orders_1(&third)["last_renewed_at_ms"].as_u64().unwrap();
    let renewed = std::sync::atomic::AtomicU64::new(0);
    wait_until(Duration::from_secs(10), || async {
        assert_eq!(server.heartbeat("orders", "orders-1").await, 200);
        let instance = server
            .get_json("/v1/services/orders/instances/orders-1")
            .await;
        let at = instance["last_renewed_at_ms"].as_u64().unwrap();
        renewed.store(at, Ordering::Relaxed);
        at > kept_renewal
    })
    .await;
    let renewed = renewed.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(10), || async {
        let shown = orders_1(&lookup().await)["last_renewed_at_ms"]
            .as_u64()
            .unwrap();
        shown >= renewed
    })
    .await;
    assert_eq!(
        lookup().await["index"],
        third["index"],
        "renewals move no index"
    );
    server.stop().await;
}
