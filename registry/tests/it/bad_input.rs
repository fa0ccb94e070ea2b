//! Bad input gets a 4xx JSON error naming the problem — never a 5xx, never a panic.

use serde_json::{Value, json};

use crate::support::{TestServer, fast_config};

async fn expect_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().len() > 5);
}

#[tokio::test]
async fn malformed_registrations() {
    let server = TestServer::start(fast_config()).await;
    let url = server.at("/v1/services/orders/instances/o1");
    let put = |body: String| {
        server
            .client
            .put(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect_error(
        put("{not json".into()).await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    expect_error(
        put(json!({"port": 1}).to_string()).await.unwrap(),
        422,
        "invalid_body",
    )
    .await;
    expect_error(
        put(json!({"host": "h", "port": 70000}).to_string())
            .await
            .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    expect_error(
        put(json!({"host": "h", "port": 0}).to_string())
            .await
            .unwrap(),
        422,
        "invalid_port",
    )
    .await;
    expect_error(
        put(json!({"host": "bad host/", "port": 1}).to_string())
            .await
            .unwrap(),
        422,
        "invalid_host",
    )
    .await;
    expect_error(
        put(json!({"host": "h", "port": 1, "weight": 0}).to_string())
            .await
            .unwrap(),
        422,
        "invalid_weight",
    )
    .await;
    expect_error(
        put(json!({"host": "h", "port": 1, "status": "SIDEWAYS"}).to_string())
            .await
            .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    expect_error(
        put(json!({"host": "h", "port": 1, "extra": true}).to_string())
            .await
            .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    let many: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("k{i}"), json!("v"))).collect();
    expect_error(
        put(json!({"host": "h", "port": 1, "metadata": many}).to_string())
            .await
            .unwrap(),
        422,
        "metadata_too_large",
    )
    .await;
    let huge = "x".repeat(100 * 1024);
    expect_error(
        put(json!({"host": "h", "port": 1, "metadata": {"k": huge}}).to_string())
            .await
            .unwrap(),
        413,
        "body_too_large",
    )
    .await;
    let no_type = server.client.put(&url).body("{}").send().await.unwrap();
    expect_error(no_type, 415, "unsupported_media_type").await;
    server.stop().await;
}

#[tokio::test]
async fn bad_names_and_queries() {
    let server = TestServer::start(fast_config()).await;
    let body = json!({"host": "h", "port": 1});
    let bad_id = server
        .client
        .put(server.at("/v1/services/orders/instances/.hidden"))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(bad_id, 422, "invalid_instance_id").await;
    let bad_service = server
        .client
        .put(server.at("/v1/services/a%20b/instances/1"))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(bad_service, 422, "invalid_service").await;
    let traversal = server
        .client
        .put(server.at("/v1/services/..%2Fetc/instances/1"))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(traversal, 422, "invalid_service").await;
    let bad_ns = server
        .client
        .put(server.at("/v1/services/a/instances/1?namespace=x/y"))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(bad_ns, 422, "invalid_namespace").await;
    expect_error(
        server
            .client
            .get(server.at("/v1/services/a?status=MAYBE"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_status",
    )
    .await;
    expect_error(
        server
            .client
            .get(server.at("/v1/services/a?index=-1"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_query",
    )
    .await;
    expect_error(
        server
            .client
            .get(server.at("/v1/services/a?index=1&wait=soon"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_wait",
    )
    .await;
    expect_error(
        server
            .client
            .get(server.at("/v1/watch?index=abc"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_index",
    )
    .await;
    expect_error(
        server
            .client
            .get(server.at("/v1/watch?bogus=1"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_query",
    )
    .await;
    expect_error(
        server
            .client
            .get(server.at("/no/such/thing"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let status = server
        .client
        .put(server.at("/v1/services/a/instances/nobody/status"))
        .json(&json!({"status": "DOWN"}))
        .send()
        .await
        .unwrap();
    expect_error(status, 404, "unknown_instance").await;
    server.stop().await;
}

/// What the OpenAPI document refuses, the server refuses too — reads included (Schemathesis'
/// negative-data check in `interop/schemathesis` found these accepted).
#[tokio::test]
async fn reads_refuse_what_the_openapi_document_refuses() {
    let server = TestServer::start(fast_config()).await;
    let get = |path: &str| server.client.get(server.at(path)).send();
    let beyond_int64 = "9223372036854775808";
    for (path, status, code) in [
        (
            "/v1/services?namespace=".to_owned(),
            422,
            "invalid_namespace",
        ),
        ("/v1/services/%C2%84".to_owned(), 422, "invalid_service"),
        (
            "/v1/services/a/instances/%C2%84".to_owned(),
            422,
            "invalid_instance_id",
        ),
        // The status filter as documented: upper case.
        ("/v1/services/a?status=up".to_owned(), 400, "invalid_status"),
        // A bad `wait` is refused even when the query does not block.
        ("/v1/services/a?wait=".to_owned(), 400, "invalid_wait"),
        ("/v1/services/a?wait=5min".to_owned(), 400, "invalid_wait"),
        (
            format!("/v1/services/a?index={beyond_int64}"),
            400,
            "invalid_index",
        ),
        (
            format!("/v1/watch?index={beyond_int64}"),
            400,
            "invalid_index",
        ),
        (
            format!("/v1/audit?since={beyond_int64}"),
            400,
            "invalid_query",
        ),
    ] {
        expect_error(get(&path).await.unwrap(), status, code).await;
    }
    let long_lease = server
        .client
        .put(server.at("/v1/services/a/instances/1"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"host": "h", "port": 1, "lease_ttl_ms": {beyond_int64}}}"#
        ))
        .send()
        .await
        .unwrap();
    expect_error(long_lease, 422, "invalid_lease").await;
    // Go-style durations are taken.
    let ok = get("/v1/services/a?index=0&wait=1m30s").await.unwrap();
    assert_eq!(ok.status(), 200);
    // The document states the rules: names' pattern, the audit's query parameters.
    let doc: serde_json::Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    let service = &doc["paths"]["/v1/services/{service}"]["get"]["parameters"][0];
    assert_eq!(service["name"], "service");
    assert_eq!(
        service["schema"]["pattern"],
        "^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$"
    );
    for parameter in doc["paths"]["/v1/audit"]["get"]["parameters"]
        .as_array()
        .unwrap()
    {
        assert_eq!(parameter["in"], "query", "{parameter}");
    }
    server.stop().await;
}
