//! Health, Prometheus metrics and the OpenAPI document.

use std::time::Duration;

use crate::support::{SseStream, TestServer, config_in};

#[tokio::test]
async fn operational_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    let mut watch = SseStream::open(
        &server.client,
        &server.at("/v1/watch/orders/default/main"),
        None,
    )
    .await;
    watch.expect(Duration::from_secs(5)).await;
    server.put_yaml("orders/default/main", "a: 1\n").await;
    watch.expect(Duration::from_secs(5)).await;
    server.resolve("orders/default/main").await;

    let health = server.get_json("/health").await;
    assert_eq!(health["status"], "UP");
    assert_eq!(health["documents"], 1);
    assert_eq!(health["secrets"], true);
    let metrics = server
        .client
        .get(server.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "config_writes_total 1",
        "config_reads_total 1",
        "config_watchers 1",
        "config_push_latency_seconds_bucket",
        "config_http_request_duration_seconds_bucket",
        "config_documents 1",
    ] {
        assert!(metrics.contains(expected), "missing {expected}:\n{metrics}");
    }
    let openapi = server.get_json("/openapi.json").await;
    for path in [
        "/v1/config/{application}/{profile}/{label}",
        "/v1/config/{application}/{profile}/{label}/history",
        "/v1/config/{application}/{profile}/{label}/rollback",
        "/v1/resolve/{application}/{profiles}/{label}",
        "/v1/watch/{application}/{profiles}/{label}",
        "/v1/schemas/{application}",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} missing");
    }
    server.stop().await;
}
