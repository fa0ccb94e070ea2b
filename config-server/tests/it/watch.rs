//! Watches: a blocking query on the resolved view, and the SSE stream; a write to the shared
//! `application` reaches every application that inherits it.

use std::time::{Duration, Instant};

use crate::support::{SseStream, TestServer, config_in};

#[tokio::test]
async fn a_blocking_query_returns_when_the_view_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    server.put_yaml("orders/default/main", "a: 1\n").await;
    let first = server
        .client
        .get(server.at("/v1/resolve/orders/default/main"))
        .send()
        .await
        .unwrap();
    let index: u64 = first.headers()["x-msakit-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    let started = Instant::now();
    let idle = server
        .client
        .get(server.at(&format!(
            "/v1/resolve/orders/default/main?index={index}&wait=300ms"
        )))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(idle.headers()["x-msakit-index"], index.to_string().as_str());

    let (client, url) = (
        server.client.clone(),
        server.at(&format!(
            "/v1/resolve/orders/default/main?index={index}&wait=30s"
        )),
    );
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let body: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        (started.elapsed(), body)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.put_yaml("payments/default/main", "x: 1\n").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "another application's write does not wake it"
    );
    // A shared write does.
    server
        .put_yaml("application/default/main", "shared: yes\n")
        .await;
    let (elapsed, body) = waiting.await.unwrap();
    assert!(elapsed < Duration::from_secs(5));
    assert_eq!(body["properties"]["shared"], "yes");
    server.stop().await;
}

#[tokio::test]
async fn sse_sends_the_view_then_every_change_including_shared_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    server.put_yaml("orders/dev/main", "a: 1\n").await;
    let mut stream = SseStream::open(
        &server.client,
        &server.at("/v1/watch/orders/dev/main"),
        None,
    )
    .await;
    let first = stream.expect(Duration::from_secs(5)).await.data;
    assert_eq!(first["properties"]["a"], 1);

    server
        .put_yaml("payments/dev/main", "ignored: true\n")
        .await;
    server.put_yaml("orders/dev/main", "a: 2\n").await;
    let second = stream.expect(Duration::from_secs(5)).await.data;
    assert_eq!(second["properties"]["a"], 2, "{second}");
    server
        .put_yaml("application/default/main", "timeout: 5s\n")
        .await;
    let third = stream.expect(Duration::from_secs(5)).await.data;
    assert_eq!(third["properties"]["timeout"], "5s");
    assert!(third["index"].as_u64() > second["index"].as_u64());
    server.stop().await;
}
