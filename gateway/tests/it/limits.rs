//! Rate limits (here, and shared through Redis by two gateways) and body limits.

use serde_json::Value;

use crate::support::{Gateway, Redis, config_with, routes, upstream};

fn limited_routes(
    target: std::net::SocketAddr,
    shared: bool,
) -> msakit_gateway::routes::spec::RouteSet {
    routes(&format!(
        r#"
routes:
  - id: limited
    uri: "http://{target}"
    predicates: {{ path: [/limited/**] }}
    auth: {{ api_key: true }}
    rate_limit: {{ requests: 3, period: 1h, shared: {shared} }}
  - id: by-ip
    uri: "http://{target}"
    predicates: {{ path: [/ip/**] }}
    rate_limit: {{ requests: 2, period: 1h, key: ip }}
api_keys:
  - {{ client: one, key: "key-one-0123456789" }}
  - {{ client: two, key: "key-two-0123456789" }}
"#
    ))
}

async fn call(gateway: &Gateway, path: &str, key: &str) -> reqwest::Response {
    gateway
        .client
        .get(gateway.at(path))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn each_client_has_its_own_bucket_and_the_refusal_says_when_to_return() {
    let (target, _) = upstream("t").await;
    let gateway = Gateway::start(config_with(limited_routes(target, false))).await;
    for _ in 0..3 {
        assert_eq!(
            call(&gateway, "/limited/x", "key-one-0123456789")
                .await
                .status(),
            200
        );
    }
    let refused = call(&gateway, "/limited/x", "key-one-0123456789").await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry_after > 1000 && retry_after <= 1200,
        "a third of an hour: {retry_after}"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        call(&gateway, "/limited/x", "key-two-0123456789")
            .await
            .status(),
        200
    );
    for _ in 0..2 {
        assert_eq!(gateway.get("/ip/x").await.status(), 200);
    }
    assert_eq!(gateway.get("/ip/x").await.status(), 429);
    let routes = gateway.admin_json("/admin/routes").await;
    assert_eq!(routes["routes"][0]["counters"]["rate_limited"], 1);
    gateway.stop().await;
}

#[tokio::test]
async fn two_gateways_share_one_budget_through_redis_and_count_alone_without_it() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (target, _) = upstream("t").await;
    let mut config = config_with(limited_routes(target, true));
    config.redis = Some(msakit_gateway::RedisConfig {
        url: redis.url.clone(),
        prefix: "test".into(),
    });
    let first = Gateway::start(config.clone()).await;
    let second = Gateway::start(config.clone()).await;
    crate::support::wait_until(std::time::Duration::from_secs(10), || async {
        first.admin_json("/health").await["redis"] == "UP"
            && second.admin_json("/health").await["redis"] == "UP"
    })
    .await;
    let mut allowed = 0;
    for round in 0..6 {
        let gateway = if round % 2 == 0 { &first } else { &second };
        if call(gateway, "/limited/x", "key-one-0123456789")
            .await
            .status()
            == 200
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "three in all, whichever gateway is asked");
    drop(redis);
    // Redis gone: each gateway counts alone (its own bucket is full again).
    let mut allowed = 0;
    for _ in 0..4 {
        if call(&first, "/limited/x", "key-one-0123456789")
            .await
            .status()
            == 200
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_declared_or_streamed() {
    let (target, _) = upstream("t").await;
    let set = routes(&format!(
        r#"
routes:
  - {{ id: small, uri: "http://{target}", filters: {{ max_body_bytes: 1000 }} }}
"#
    ));
    let gateway = Gateway::start(config_with(set)).await;
    let ok = gateway
        .client
        .post(gateway.at("/echo"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap()["body_bytes"], 1000);
    let declared = gateway
        .client
        .post(gateway.at("/echo"))
        .body(vec![b'x'; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    assert_eq!(
        declared.json::<Value>().await.unwrap()["error"]["code"],
        "body_too_large"
    );
    // Chunked, no length: refused once past the limit.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 100])));
    let streamed = gateway
        .client
        .post(gateway.at("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    gateway.stop().await;
}
