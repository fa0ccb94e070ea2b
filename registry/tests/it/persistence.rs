//! With `--data-dir`, registrations survive a restart and get one lease to heartbeat again.

use std::time::Duration;

use crate::support::{TestServer, wait_until};

#[tokio::test]
async fn registrations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    server.up("orders", "o1", 8080, 400).await;
    server.up("orders", "o2", 8081, 15_000).await;
    server
        .client
        .put(server.at("/v1/services/orders/instances/o2/status"))
        .json(&serde_json::json!({"status": "OUT_OF_SERVICE"}))
        .send()
        .await
        .unwrap();
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    let restored = server.get_json("/v1/services/orders").await;
    let instances = restored["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    assert_eq!(
        instances[1]["status"], "OUT_OF_SERVICE",
        "the override survives too"
    );
    // o2 heartbeats (its lease is known); o1 does not and is gone after one lease.
    assert_eq!(server.heartbeat("orders", "o2").await, 200);
    wait_until(Duration::from_secs(5), || async {
        server.instance_ids("orders").await == ["o2"]
    })
    .await;
    server.stop().await;

    // The expiry was persisted too.
    let server = TestServer::start_in(dir.path()).await;
    assert_eq!(server.instance_ids("orders").await, ["o2"]);
    server.stop().await;
}

#[tokio::test]
async fn without_a_data_dir_a_restart_forgets_and_heartbeats_get_404() {
    let server = TestServer::start(crate::support::fast_config()).await;
    server.up("orders", "o1", 8080, 15_000).await;
    server.stop().await;
    let server = TestServer::start(crate::support::fast_config()).await;
    assert_eq!(server.heartbeat("orders", "o1").await, 404);
    server.stop().await;
}
