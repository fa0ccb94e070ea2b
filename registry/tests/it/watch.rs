//! Watches: blocking queries and the SSE stream with resume.

use std::time::{Duration, Instant};

use crate::support::{SseStream, TestServer, fast_config};

#[tokio::test]
async fn a_blocking_query_returns_as_soon_as_the_service_changes() {
    let server = TestServer::start(fast_config()).await;
    server.up("cart", "c1", 1, 15_000).await;
    let first = server
        .client
        .get(server.at("/v1/services/cart"))
        .send()
        .await
        .unwrap();
    let index: u64 = first.headers()["x-msakit-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    // Nothing changes: the query waits out its `wait`.
    let started = Instant::now();
    let response = server
        .client
        .get(server.at(&format!("/v1/services/cart?index={index}&wait=300ms")))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        response.headers()["x-msakit-index"],
        index.to_string().as_str()
    );

    // A change to another service does not wake it; one to this service does, at once.
    let url = server.at(&format!("/v1/services/cart?index={index}&wait=30s"));
    let client = server.client.clone();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let response = client.get(url).send().await.unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        (started.elapsed(), body)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.up("other", "o1", 2, 15_000).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "another service's change must not wake it"
    );
    server.up("cart", "c2", 3, 15_000).await;
    let (elapsed, body) = waiting.await.unwrap();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(body["instances"].as_array().unwrap().len(), 2);
    assert!(body["index"].as_u64().unwrap() > index);
    server.stop().await;
}

#[tokio::test]
async fn sse_sends_a_snapshot_then_changes_in_order() {
    let server = TestServer::start(fast_config()).await;
    server.up("a", "a1", 1, 15_000).await;
    server.up("b", "b1", 2, 15_000).await;
    let mut stream = SseStream::open(&server.client, &server.at("/v1/watch?service=a"), None).await;
    let snapshot = stream.expect(Duration::from_secs(5)).await;
    assert_eq!(snapshot.event, "snapshot");
    let services = snapshot.data["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "only the watched service");
    assert_eq!(services[0]["instances"][0]["id"], "a1");

    server.up("b", "b2", 3, 15_000).await;
    server.up("a", "a2", 4, 15_000).await;
    server
        .client
        .delete(server.at("/v1/services/a/instances/a1"))
        .send()
        .await
        .unwrap();
    let added = stream.expect(Duration::from_secs(5)).await;
    assert_eq!(added.event, "change");
    assert_eq!(added.data["type"], "upserted");
    assert_eq!(added.data["instance"]["id"], "a2");
    let removed = stream.expect(Duration::from_secs(5)).await;
    assert_eq!(removed.data["type"], "removed");
    assert_eq!(removed.data["reason"], "deregistered");
    let (first, second): (u64, u64) = (
        added.id.unwrap().parse().unwrap(),
        removed.id.unwrap().parse().unwrap(),
    );
    assert!(second > first);
    server.stop().await;
}

#[tokio::test]
async fn a_reconnecting_watcher_resumes_from_its_last_event_id() {
    let server = TestServer::start(fast_config()).await;
    let url = server.at("/v1/watch");
    let mut stream = SseStream::open(&server.client, &url, None).await;
    stream.expect(Duration::from_secs(5)).await;
    server.up("a", "a1", 1, 15_000).await;
    let seen = stream.expect(Duration::from_secs(5)).await;
    drop(stream);

    // Changes while disconnected.
    server.up("a", "a2", 2, 15_000).await;
    server.up("a", "a3", 3, 15_000).await;
    let mut resumed = SseStream::open(&server.client, &url, seen.id.as_deref()).await;
    let first = resumed.expect(Duration::from_secs(5)).await;
    assert_eq!(
        first.event, "change",
        "no snapshot: the missed changes instead"
    );
    assert_eq!(first.data["instance"]["id"], "a2");
    let second = resumed.expect(Duration::from_secs(5)).await;
    assert_eq!(second.data["instance"]["id"], "a3");

    // An index the history no longer reaches (or never had) gets a fresh snapshot.
    let mut fresh =
        SseStream::open(&server.client, &server.at("/v1/watch?index=999999"), None).await;
    let snapshot = fresh.expect(Duration::from_secs(5)).await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(
        snapshot.data["services"][0]["instances"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_watch_streams() {
    let server = TestServer::start(fast_config()).await;
    let mut stream = SseStream::open(&server.client, &server.at("/v1/watch"), None).await;
    stream.expect(Duration::from_secs(5)).await;
    let stopping = tokio::spawn(server.stop());
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(end.is_none(), "the stream ends");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
}
