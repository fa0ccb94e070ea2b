//! Bodies stream both ways, SSE and WebSocket pass through, HTTP/2 on both sides.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Gateway, config_with, routes, upstream};

#[tokio::test]
async fn sse_events_arrive_one_by_one_and_uploads_stream_through() {
    let (target, state) = upstream("t").await;
    let set = routes(&format!("routes: [{{ id: all, uri: 'http://{target}' }}]"));
    let gateway = Gateway::start(config_with(set)).await;
    // The first event arrives while the upstream still holds the second back.
    let response = gateway.get("/sse").await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    state.go_on.notify_one();
    let second = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&second[..], b"data: second\n\n");
    // The upstream has the upload's first chunk before the client sends the rest.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let upload = tokio::spawn({
        let request = gateway
            .client
            .post(gateway.at("/upload"))
            .body(reqwest::Body::wrap_stream(tokio_stream_from(receiver)));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    });
    sender.send(Ok(vec![1; 100_000])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), state.first_chunk.notified())
        .await
        .unwrap();
    for _ in 0..20 {
        sender.send(Ok(vec![2; 1_000_000])).await.unwrap();
    }
    drop(sender);
    let answer = tokio::time::timeout(Duration::from_secs(30), upload)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer["bytes"], 20_100_000);
    gateway.stop().await;
}

fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test]
async fn websockets_pass_through() {
    let (target, _) = upstream("t").await;
    let set = routes(&format!(
        "routes: [{{ id: ws, uri: 'http://{target}', predicates: {{ path: [/socket] }}, filters: {{ rewrite_path: {{ pattern: '.*', replacement: /ws }} }} }}]"
    ));
    let gateway = Gateway::start(config_with(set)).await;
    let url = gateway.at("/socket").replace("http://", "ws://");
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    for text in ["one", "two"] {
        socket.send(Message::Text(text.into())).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(answer, Message::Text(format!("echo: {text}").into()));
    }
    socket.close(None).await.unwrap();
    gateway.stop().await;
}

#[tokio::test]
async fn http2_on_both_sides() {
    let (target, _) = upstream("t").await;
    let set = routes(&format!(
        r#"
routes:
  - {{ id: h2, uri: "http://{target}", predicates: {{ path: [/h2/**] }}, call: {{ protocol: h2c }} }}
  - {{ id: h1, uri: "http://{target}" }}
"#
    ));
    let gateway = Gateway::start(config_with(set)).await;
    let h2_client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (path, upstream_version) in [("/h2/x", "HTTP/2.0"), ("/x", "HTTP/1.1")] {
        let response = h2_client.get(gateway.at(path)).send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let seen: Value = response.json().await.unwrap();
        assert_eq!(seen["version"], upstream_version, "{path}");
    }
    // An HTTP/2 body without a length is still a body.
    let chunks =
        futures_util::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(vec![7u8; 1000])));
    let response = h2_client
        .post(gateway.at("/h2/x"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["body_bytes"], 3000);
    gateway.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_an_open_stream_finish() {
    let (target, state) = upstream("t").await;
    let set = routes(&format!("routes: [{{ id: all, uri: 'http://{target}' }}]"));
    let gateway = Gateway::start(config_with(set)).await;
    let url = gateway.url.clone();
    let mut body = gateway.get("/sse").await.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    let stopping = tokio::spawn(gateway.stop());
    // No new connection is taken once shutdown began...
    crate::support::wait_until(Duration::from_secs(10), || async {
        reqwest::Client::new()
            .get(format!("{url}/x"))
            .send()
            .await
            .is_err()
    })
    .await;
    // ...while the stream already open still gets its events, within the grace period.
    state.go_on.notify_one();
    let second = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&second[..], b"data: second\n\n");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}
