//! Broken documents are refused with line and column; schemas are enforced; names cannot spell
//! paths; sizes are bounded.

use serde_json::{Value, json};

use crate::support::{TestServer, config_in};

async fn error(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    response.json::<Value>().await.unwrap()["error"].clone()
}

#[tokio::test]
async fn broken_documents_are_refused_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    let e = error(
        server
            .put(
                "orders/default/main",
                "application/yaml",
                "a: 1\nb: [oops\nc: 3\n",
            )
            .await,
        422,
    )
    .await;
    assert_eq!(e["code"], "syntax_error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("YAML does not parse at line"),
        "{e}"
    );
    let e = error(
        server
            .put(
                "orders/default/main",
                "application/json",
                "{\n  \"a\": 1,\n  \"b\": }",
            )
            .await,
        422,
    )
    .await;
    assert!(
        e["message"].as_str().unwrap().contains("line 3, column 8"),
        "{e}"
    );
    let e = error(
        server
            .put("orders/default/main", "application/json", "[1, 2]")
            .await,
        422,
    )
    .await;
    assert_eq!(e["code"], "not_a_map");
    let e = error(
        server.put("orders/default/main", "image/png", "x").await,
        415,
    )
    .await;
    assert_eq!(e["code"], "unsupported_media_type");
    let ok = server
        .put(
            "orders/default/main",
            "text/x-java-properties",
            "pool.size=4\nname = orders\n",
        )
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        server.resolve("orders/default/main").await["properties"]["pool.size"],
        "4"
    );
    // Nothing broken was stored.
    let history = server
        .get_json("/v1/config/orders/default/main/history")
        .await;
    assert_eq!(history["versions"].as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_schema_rejects_invalid_values_with_the_failing_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    let schema = json!({
        "type": "object",
        "properties": {"pool": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}}}
    });
    let set = server
        .client
        .put(server.at("/v1/schemas/orders"))
        .json(&schema)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    let e = error(
        server
            .put(
                "orders/default/main",
                "application/yaml",
                "pool:\n  size: 0\n",
            )
            .await,
        422,
    )
    .await;
    assert_eq!(e["code"], "schema_violation");
    assert!(e["message"].as_str().unwrap().contains("/pool/size"), "{e}");
    assert_eq!(
        server
            .put(
                "orders/default/main",
                "application/yaml",
                "pool:\n  size: 3\n"
            )
            .await
            .status(),
        200
    );
    // Other applications are not bound by it.
    assert_eq!(
        server
            .put(
                "payments/default/main",
                "application/yaml",
                "pool:\n  size: 0\n"
            )
            .await
            .status(),
        200
    );
    let bad_schema = server
        .client
        .put(server.at("/v1/schemas/orders"))
        .json(&json!({"type": 12}))
        .send()
        .await
        .unwrap();
    assert_eq!(error(bad_schema, 422).await["code"], "invalid_schema");
    server.stop().await;
}

#[tokio::test]
async fn names_sizes_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.max_document_bytes = 4096;
    let server = TestServer::start(config).await;
    for path in [
        "..%2Fetc/default/main",
        "orders/de%2Fv/main",
        ".env/default/main",
        "orders/default/..x",
        "a%20b/default/main",
    ] {
        let e = error(server.put(path, "application/yaml", "a: 1\n").await, 400).await;
        assert_eq!(e["code"], "invalid_name", "{path}");
    }
    let big = format!("a: {}\n", "x".repeat(5000));
    assert_eq!(
        error(
            server
                .put("orders/default/main", "application/yaml", &big)
                .await,
            413
        )
        .await["code"],
        "document_too_large"
    );
    let r = server
        .client
        .put(server.at("/v1/config/orders/default/main"))
        .header("content-type", "application/yaml")
        .header("if-match", "soon")
        .body("a: 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(error(r, 400).await["code"], "invalid_if_match");
    let r = server
        .client
        .get(server.at("/v1/resolve/orders/default/main?index=1&wait=later"))
        .send()
        .await
        .unwrap();
    assert_eq!(error(r, 400).await["code"], "invalid_wait");
    let r = server
        .client
        .get(server.at("/v1/config/nothing/default/main"))
        .send()
        .await
        .unwrap();
    assert_eq!(error(r, 404).await["code"], "not_found");
    let r = server.client.get(server.at("/nope")).send().await.unwrap();
    assert_eq!(error(r, 404).await["code"], "not_found");
    server.stop().await;
}

/// What the OpenAPI document refuses, the server refuses too (Schemathesis' negative-data check
/// in `interop/schemathesis` found these accepted).
#[tokio::test]
async fn what_the_openapi_document_refuses_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    let ok = server
        .put("orders/default/main", "application/yaml", "a: 1\n")
        .await;
    assert_eq!(ok.status(), 200);
    let get = |path: &str| server.client.get(server.at(path)).send();
    // A bad `wait` is refused even when the query does not block; an index past int64 too.
    let r = get("/v1/resolve/orders/default/main?wait=").await.unwrap();
    assert_eq!(error(r, 400).await["code"], "invalid_wait");
    let r = get("/v1/resolve/orders/default/main?index=9223372036854775808")
        .await
        .unwrap();
    assert_eq!(error(r, 400).await["code"], "invalid_index");
    let r = get("/v1/audit?since=9223372036854775808").await.unwrap();
    assert_eq!(error(r, 400).await["code"], "invalid_query");
    // Profiles: comma-separated names, spaces around them allowed, none empty.
    let r = get("/v1/resolve/orders/default,,dev/main").await.unwrap();
    assert_eq!(error(r, 400).await["code"], "invalid_name");
    let r = get("/v1/resolve/orders/%09default/main").await.unwrap();
    assert_eq!(error(r, 400).await["code"], "invalid_name");
    let r = get("/v1/resolve/orders/default,%20dev/main").await.unwrap();
    assert_eq!(r.status(), 200);
    // Spring's API stays as lenient as Spring's own server: an empty profile is skipped.
    let r = get("/orders/default,/main").await.unwrap();
    assert_eq!(r.status(), 200);
    // A written `null` is not a map; a document of comments is an empty one.
    let r = server
        .put("orders/dev/main", "application/yaml", "null\n")
        .await;
    assert_eq!(error(r, 422).await["code"], "not_a_map");
    let r = server
        .put("orders/dev/main", "application/yaml", "# nothing yet\n")
        .await;
    assert_eq!(r.status(), 200);
    // A schema must be an object (`false` is a JSON Schema, but refuses every config).
    let r = server
        .client
        .put(server.at("/v1/schemas/orders"))
        .json(&json!(false))
        .send()
        .await
        .unwrap();
    assert_eq!(error(r, 422).await["code"], "invalid_schema");
    // The document states the rules.
    let doc: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    let parameters =
        &doc["paths"]["/v1/config/{application}/{profile}/{label}"]["get"]["parameters"];
    let label = parameters
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "label")
        .unwrap();
    assert!(
        label["schema"]["pattern"]
            .as_str()
            .unwrap()
            .contains("\\(_\\)")
    );
    server.stop().await;
}
