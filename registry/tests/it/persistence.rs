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

async fn server_index(server: &TestServer) -> u64 {
    server.get_json("/v1/services").await["index"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn indexes_keep_growing_across_restarts_even_after_removals() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    server.up("a", "1", 1, 15_000).await;
    server.up("a", "2", 2, 15_000).await;
    let response = server
        .client
        .delete(server.at("/v1/services/a/instances/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let last = server_index(&server).await;
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    assert_eq!(
        server_index(&server).await,
        last,
        "the removal's index is remembered"
    );
    server.up("a", "3", 3, 15_000).await;
    assert!(server_index(&server).await > last);
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
