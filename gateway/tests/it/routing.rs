//! Predicates, filters, fixed and `lb://` targets, retries, and the error shape.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Gateway, config_with, registry, routes, upstream, wait_until};

#[tokio::test]
async fn predicates_and_filters_shape_what_the_target_sees() {
    let (a, a_state) = upstream("a").await;
    let (b, _) = upstream("b").await;
    let set = routes(&format!(
        r#"
routes:
  - id: tenant-b
    uri: http://{b}
    order: -1
    predicates: {{ path: [/api/**], headers: {{ x-tenant: "globex|initech" }} }}
  - id: api
    uri: http://{a}/base
    predicates: {{ path: [/api/**], methods: [GET, POST], host: ["*.example.com"] }}
    filters:
      strip_prefix: 1
      rewrite_path: {{ pattern: "^/v1/(?<rest>.*)$", replacement: "/v2/${{rest}}" }}
      add_request_headers: {{ x-from: gateway }}
      remove_request_headers: [cookie]
      add_response_headers: {{ x-served-by: msakit }}
      remove_response_headers: [x-internal]
"#
    ));
    let gateway = Gateway::start(config_with(set)).await;
    let response = gateway
        .client
        .get(gateway.at("/api/v1/orders/7?full=1"))
        .header("host", "shop.example.com")
        .header("cookie", "secret=1")
        .header("x-from", "client")
        .header("connection", "keep-alive, x-hop, upgrade")
        .header("x-hop", "dropped")
        .header("upgrade", "h2c")
        .header("x-client-id", "admin")
        .header("forwarded", "for=6.6.6.6;proto=https")
        .header("proxy-authorization", "Basic eDp5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-served-by"], "msakit");
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["upstream"], "a");
    assert_eq!(seen["path"], "/base/v2/orders/7");
    assert_eq!(seen["query"], "full=1");
    let headers = &seen["headers"];
    assert_eq!(headers["x-from"], "gateway");
    assert!(headers.get("cookie").is_none());
    assert!(
        headers.get("x-hop").is_none(),
        "a header named by Connection is hop-by-hop"
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "shop.example.com");
    assert_eq!(headers["x-forwarded-prefix"], "/api");
    for gone in ["upgrade", "x-client-id", "forwarded", "proxy-authorization"] {
        assert!(headers.get(gone).is_none(), "{gone} reached the target");
    }
    assert!(
        headers["traceparent"].is_null(),
        "no trace was started by the client"
    );
    // The header predicate takes a route of lower order first.
    let seen: Value = gateway
        .client
        .get(gateway.at("/api/x"))
        .header("x-tenant", "globex")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["upstream"], "b");
    assert_eq!(seen["path"], "/api/x");
    // One canonical path is matched and sent on: an encoded letter is the letter, and a dot
    // segment (encoded or not) cannot climb out of the route that matched.
    let seen: Value = gateway
        .client
        .get(gateway.at("/%61pi/v1/x"))
        .header("host", "shop.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/base/v2/x");
    // Sent as written (an HTTP client library would resolve the dots itself).
    for sneaky in [
        "/api/%2e%2e/admin",
        "/api/../admin",
        "/api/x%2Fy",
        "/api/a\\b",
    ] {
        let answer = raw_get(&gateway.url, sneaky, "shop.example.com").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{sneaky}: {answer}");
        assert!(answer.contains("invalid_path"), "{sneaky}: {answer}");
    }
    // Another host, or method: no route, the error shape.
    for request in [
        gateway
            .client
            .get(gateway.at("/api/x"))
            .header("host", "example.org"),
        gateway
            .client
            .delete(gateway.at("/api/x"))
            .header("host", "a.example.com"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 404);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "not_found");
    }
    assert_eq!(a_state.hits.load(Ordering::SeqCst), 2);
    gateway.stop().await;
}

#[tokio::test]
async fn a_route_set_that_does_not_compile_stops_the_start() {
    for bad in [
        "routes: [{ id: a, uri: 'ftp://x' }]",
        "routes: [{ id: a, uri: 'lb://order' }]",
        "routes: [{ id: a, uri: 'http://x', predicates: { path: [nope] } }]",
        "routes: [{ id: a, uri: 'http://x' }, { id: a, uri: 'http://y' }]",
        "routes: [{ id: a, uri: 'http://x', auth: { jwt: { provider: none } } }]",
        "routes: [{ id: a, uri: 'http://x', rate_limit: { requests: 0 } }]",
        "routes: [{ id: a, uri: 'http://x', cors: { allowed_origins: ['*'], allow_credentials: true } }]",
        "api_keys: [{ client: a, key: short }]",
        "routes: [{ id: a, uri: 'http://x', call: { deadline: 100000d } }]",
    ] {
        let error = Gateway::try_start(config_with(routes(bad))).await.err();
        assert!(error.is_some(), "{bad} was accepted");
    }
}

#[tokio::test]
async fn lb_targets_balance_over_the_registry_and_retry_elsewhere() {
    let registry = registry().await;
    let sdk = msakit::Client::builder()
        .registry_url(&registry.url)
        .build()
        .unwrap();
    let mut registrations = Vec::new();
    let mut states = Vec::new();
    for name in ["one", "two"] {
        let (address, state) = upstream(name).await;
        let registration = sdk
            .registration(msakit::RegistrationOptions::new(
                "orders",
                name,
                "127.0.0.1",
                address.port(),
            ))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), registration.registered())
            .await
            .unwrap();
        registrations.push(registration);
        states.push(state);
    }
    let set = routes(
        r#"
routes:
  - id: orders
    uri: lb://orders
    predicates: { path: [/orders/**] }
    filters: { strip_prefix: 1, max_body_bytes: 10000 }
    call: { timeout: 1s, max_attempts: 2, idempotency_header: idempotency-key }
"#,
    );
    let mut config = config_with(set);
    config.registry = vec![registry.url.clone()];
    let gateway = Gateway::start(config).await;
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    wait_until(Duration::from_secs(10), || async {
        let response = gateway.get("/orders/1").await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            let name = body["upstream"].as_str().unwrap().to_owned();
            seen.lock().unwrap().insert(name);
        }
        seen.lock().unwrap().len() == 2
    })
    .await;
    // Every instance answers 503 on /fail: a GET is tried on each of the two, and the client
    // gets the last answer.
    let before: Vec<usize> = states
        .iter()
        .map(|s| s.hits.load(Ordering::SeqCst))
        .collect();
    let response = gateway.get("/orders/fail").await;
    assert_eq!(response.status(), 503);
    let after: Vec<usize> = states
        .iter()
        .map(|s| s.hits.load(Ordering::SeqCst))
        .collect();
    let tried: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(tried, [1, 1], "one attempt on each instance");
    // A POST is tried once, unless it carries an idempotency key.
    let hits = || {
        states
            .iter()
            .map(|s| s.hits.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    let before = hits();
    let post = gateway
        .client
        .post(gateway.at("/orders/fail"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 503);
    assert_eq!(hits() - before, 1);
    let before = hits();
    let keyed = gateway
        .client
        .post(gateway.at("/orders/fail"))
        .header("idempotency-key", "order-7")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 503);
    assert_eq!(hits() - before, 2);
    // Uploads cut off at the body limit are the client's doing: 25 of them neither open the
    // route's breaker (20 calls) nor eject an instance.
    for _ in 0..25 {
        let chunks =
            futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1000])));
        let response = gateway
            .client
            .post(gateway.at("/orders/upload"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
    }
    assert_eq!(gateway.get("/orders/1").await.status(), 200);
    drop(registrations);
    gateway.stop().await;
}

/// A GET written by hand, path untouched; the whole answer.
async fn raw_get(base: &str, path: &str, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}
