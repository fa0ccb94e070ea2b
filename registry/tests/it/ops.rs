//! Health, Prometheus metrics, the OpenAPI document and the dashboard page.

use crate::support::{TestServer, fast_config};

#[tokio::test]
async fn operational_endpoints() {
    let server = TestServer::start(fast_config()).await;
    server.up("orders", "o1", 1, 15_000).await;
    assert_eq!(server.heartbeat("orders", "o1").await, 200);
    assert_eq!(server.heartbeat("orders", "ghost").await, 404);

    let health = server.get_json("/health").await;
    assert_eq!(health["status"], "UP");
    assert_eq!(health["instances"], 1);

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
        "registry_instances{status=\"UP\"} 1",
        "registry_registrations_total 1",
        "registry_renewals_total 1",
        "registry_renewals_unknown_total 1",
        "registry_http_request_duration_seconds_bucket",
        "route=\"/v1/services/{service}/instances/{id}/heartbeat\"",
    ] {
        assert!(metrics.contains(expected), "missing {expected}:\n{metrics}");
    }

    let openapi = server.get_json("/openapi.json").await;
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/services",
        "/v1/services/{service}",
        "/v1/services/{service}/instances/{id}",
        "/v1/services/{service}/instances/{id}/heartbeat",
        "/v1/services/{service}/instances/{id}/status",
        "/v1/watch",
        "/health",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }

    let page = server.client.get(server.at("/")).send().await.unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("EventSource('/v1/watch')")
    );
    server.stop().await;
}
