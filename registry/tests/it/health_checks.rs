//! Server-side health checks: DOWN after N failures, UP after M successes; TCP and HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::get;
use serde_json::json;

use crate::support::{TestServer, fast_config, wait_until};

fn config() -> msakit_registry::RegistryConfig {
    let mut config = fast_config();
    config.health_checks.min_interval = Duration::from_millis(20);
    config
}

/// A service whose `/health` answers 200 or 503 as the test says.
async fn checked_service() -> (u16, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&healthy);
    let app = axum::Router::new().route(
        "/health",
        get(move || {
            let flag = Arc::clone(&flag);
            async move {
                if flag.load(Ordering::SeqCst) {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, healthy)
}

async fn status(server: &TestServer, service: &str, id: &str) -> String {
    server
        .get_json(&format!("/v1/services/{service}/instances/{id}"))
        .await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_http_check_marks_down_and_up() {
    let server = TestServer::start(config()).await;
    let (port, healthy) = checked_service().await;
    let response = server
        .register(
            "web",
            "w1",
            json!({"host": "127.0.0.1", "port": port, "health_check": {
                "type": "http", "path": "/health", "interval_ms": 30, "timeout_ms": 20,
                "failures_before_down": 2, "successes_before_up": 2}}),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    wait_until(Duration::from_secs(5), || async {
        server.get_json("/v1/services/web/instances/w1").await["check_passing"] == true
    })
    .await;
    healthy.store(false, Ordering::SeqCst);
    wait_until(Duration::from_secs(5), || async {
        status(&server, "web", "w1").await == "DOWN"
    })
    .await;
    let instance = server.get_json("/v1/services/web/instances/w1").await;
    assert_eq!(
        instance["reported_status"], "UP",
        "the instance's own report is kept"
    );
    healthy.store(true, Ordering::SeqCst);
    wait_until(Duration::from_secs(5), || async {
        status(&server, "web", "w1").await == "UP"
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_tcp_check_marks_an_unreachable_instance_down() {
    let server = TestServer::start(config()).await;
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    server
        .register(
            "db",
            "d1",
            json!({"host": "127.0.0.1", "port": port, "health_check": {
                "type": "tcp", "interval_ms": 30, "timeout_ms": 20, "failures_before_down": 2}}),
        )
        .await;
    wait_until(Duration::from_secs(5), || async {
        status(&server, "db", "d1").await == "DOWN"
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_checks_are_refused() {
    let server = TestServer::start(fast_config()).await;
    for check in [
        json!({"type": "http", "interval_ms": 10000}),
        json!({"type": "http", "path": "/h", "interval_ms": 10}),
        json!({"type": "tcp", "path": "/h"}),
        json!({"type": "http", "path": "/h", "timeout_ms": 20000}),
    ] {
        let response = server
            .register(
                "x",
                "1",
                json!({"host": "h", "port": 1, "health_check": check}),
            )
            .await;
        assert_eq!(response.status(), 422);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_health_check");
    }
    server.stop().await;
}
