//! Connection limits, the header read timeout (slowloris) and watchers per client: each refusal
//! is a clear error and a metric, and the server stays up.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestServer, fast_config};

/// Reads what the server sends until it closes the connection (or `within` passes).
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut answer)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn one_connection_over_the_limit_gets_a_json_503_and_the_server_carries_on() {
    let mut config = fast_config();
    config.connections.max_connections = 2;
    let server = TestServer::start(config).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let first = TcpStream::connect(&addr).await.unwrap();
    let second = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut third, Duration::from_secs(5))
        .await
        .expect("refused and closed at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"too_many_connections\""), "{answer}");

    // With a slot free again, the server answers, and counts the refusal.
    drop((first, second));
    let metrics = crate::support::wait_for_text(&server.at("/metrics")).await;
    assert!(
        metrics.contains(r#"msakit_limit_rejections_total{limit="connections"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mut config = fast_config();
    config.connections.header_read_timeout = Duration::from_millis(300);
    let server = TestServer::start(config).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = read_to_close(&mut slow, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a slowloris connection is closed");
    // Everyone else is still served.
    assert_eq!(server.get_json("/health").await["status"], "UP");
}

#[tokio::test]
async fn watchers_per_client_are_capped_and_slots_come_back() {
    let mut config = fast_config();
    config.watch.max_per_client = 2;
    let server = TestServer::start(config).await;
    let client = reqwest::Client::new();
    let watch = || client.get(server.at("/v1/watch?service=orders")).send();
    let first = watch().await.unwrap();
    let second = watch().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let refused = watch().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_watchers");
    drop(first);
    crate::support::wait_until(Duration::from_secs(5), || async {
        watch().await.unwrap().status() == 200
    })
    .await;
    let metrics = crate::support::wait_for_text(&server.at("/metrics")).await;
    assert!(
        metrics.contains(r#"msakit_limit_rejections_total{limit="watchers_per_client"}"#),
        "{metrics}"
    );
    drop(second);
}
