//! Spring Cloud Config's HTTP API over raw HTTP.

use serde_json::Value;

use crate::support::{TestServer, config_in};

async fn seed(server: &TestServer) {
    server
        .put_yaml("application/default/main", "shared: base\ntimeout: 1s\n")
        .await;
    server
        .put_yaml("orders/default/main", "timeout: 2s\npool:\n  size: 4\n")
        .await;
    server
        .put_yaml("orders/dev/main", "pool:\n  size: 8\nhosts: [a, b]\n")
        .await;
}

/// The names of an Environment's property sources, highest precedence first.
fn source_names(env: &Value) -> Vec<&str> {
    let sources = env["propertySources"].as_array().unwrap();
    sources
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect()
}

/// A server in a temporary folder with [`seed`]'s documents.
async fn seeded() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    seed(&server).await;
    (dir, server)
}

#[tokio::test]
async fn environment_documents_in_springs_shape() {
    let (_dir, server) = seeded().await;
    for path in ["/orders/dev", "/orders/dev/main", "/orders/dev/master"] {
        let env = server.get_json(path).await;
        assert_eq!(env["name"], "orders", "{path}");
        assert_eq!(env["profiles"], serde_json::json!(["dev"]));
        assert_eq!(env["label"], "main");
        let sources = env["propertySources"].as_array().unwrap();
        assert_eq!(
            source_names(&env),
            [
                "msakit:main/orders-dev.yml",
                "msakit:main/orders.yml",
                "msakit:main/application.yml"
            ]
        );
        assert_eq!(sources[0]["source"]["pool.size"], 8);
        assert_eq!(sources[0]["source"]["hosts[1]"], "b");
    }
    // Several profiles, URL-encoded comma.
    let env = server.get_json("/orders/dev%2Ceu/main").await;
    assert_eq!(env["profiles"], serde_json::json!(["dev", "eu"]));
    // Another application gets the shared documents; a label that exists but has nothing for an
    // application is an empty Environment, as Spring answers by default.
    let other = server.get_json("/nobody/default").await;
    assert_eq!(other["propertySources"].as_array().unwrap().len(), 1);
    server.put_yaml("orders/default/other", "x: 1\n").await;
    let empty = server.get_json("/nobody/default/other").await;
    assert_eq!(empty["propertySources"], serde_json::json!([]));
    server.stop().await;
}

#[tokio::test]
async fn merged_files_in_every_format() {
    let (_dir, server) = seeded().await;
    let text = |path: &'static str| {
        let client = server.client.clone();
        let url = server.at(path);
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let yaml = text("/orders-dev.yml").await;
    assert!(yaml.contains("pool:\n  size: 8"), "{yaml}");
    assert!(yaml.contains("timeout: 2s"), "{yaml}");
    let json: Value = serde_json::from_str(&text("/main/orders-dev.json").await).unwrap();
    assert_eq!(json["pool"]["size"], 8);
    assert_eq!(json["hosts"][0], "a");
    assert_eq!(json["shared"], "base");
    let properties = text("/orders-dev.properties").await;
    assert!(properties.contains("pool.size: 8\n"), "{properties}");
    assert!(properties.contains("hosts[1]: b\n"), "{properties}");
    assert_eq!(text("/master/orders-dev.yaml").await, yaml);
    let missing = server.get("/nothing-here.exe").await;
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn a_prefix_moves_the_api_and_empty_results_can_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.spring.prefix = "/spring".into();
    config.spring.accept_empty = false;
    let server = TestServer::start(config).await;
    seed(&server).await;
    assert_eq!(
        server.get_json("/spring/orders/dev").await["name"],
        "orders"
    );
    let root = server.get("/orders/dev").await;
    assert_eq!(root.status(), 404);
    server.put_yaml("orders/default/other", "x: 1\n").await;
    let empty = server.get("/spring/nobody/default/other").await;
    assert_eq!(empty.status(), 404);
    let body: Value = empty.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    server.stop().await;
}

#[tokio::test]
async fn labels_with_slashes_are_spelled_with_underscores_in_parentheses() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    server
        .put_yaml("orders/default/feature(_)x", "flag: on\n")
        .await;
    let env = server.get_json("/orders/default/feature(_)x").await;
    assert_eq!(env["label"], "feature/x");
    assert_eq!(env["propertySources"][0]["source"]["flag"], "on");
    let yaml = server
        .client
        .get(server.at("/feature(_)x/orders-default.yml"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(yaml.contains("flag: on"), "{yaml}");
    let bad = server
        .client
        .get(server.at("/orders/default/a(_).."))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn stored_plain_files_with_placeholders() {
    let (_dir, server) = seeded().await;
    let put = server
        .client
        .put(server.at("/v1/files/orders/default/main/conf/nginx.conf"))
        .body("worker_connections ${pool.size};\ntimeout ${timeout};\nkeep ${nothing:on};\n")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    // The dev profile falls back to the default profile's file, filled from the dev view.
    let text = server
        .get("/orders/dev/main/conf/nginx.conf")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, "worker_connections 8;\ntimeout 2s;\nkeep on;\n");
    let traversal = server
        .client
        .put(server.at("/v1/files/orders/default/main/..%2Fx"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(traversal.status(), 400);
    let deleted = server
        .client
        .delete(server.at("/v1/files/orders/default/main/conf/nginx.conf"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = server.get("/orders/dev/main/conf/nginx.conf").await;
    assert_eq!(gone.status(), 404);
    server.stop().await;
}

/// Regression (issue 18): Spring's config client asks for
/// `application/vnd.spring-cloud.config-server.v2+json` first, and Spring's server answers it in
/// that type with every value as `{"value": …, "origin": …}`; we answered plain JSON.
#[tokio::test]
async fn the_v2_media_type_is_answered_with_origins() {
    let (_dir, server) = seeded().await;
    let v2 = "application/vnd.spring-cloud.config-server.v2+json";
    for path in ["/orders/dev", "/orders/dev/main"] {
        let response = server
            .client
            .get(server.at(path))
            .header("accept", format!("{v2}, application/json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], v2, "{path}");
        let env: Value = response.json().await.unwrap();
        let first = &env["propertySources"][0];
        assert_eq!(first["name"], "msakit:main/orders-dev.yml");
        assert_eq!(first["source"]["pool.size"]["value"], 8);
        assert_eq!(
            first["source"]["pool.size"]["origin"],
            "msakit:main/orders-dev.yml:pool.size"
        );
        assert_eq!(env["label"], "main");
    }
    // application/json (or nothing said) keeps plain values.
    let plain = server
        .client
        .get(server.at("/orders/dev"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.headers()["content-type"], "application/json");
    let env: Value = plain.json().await.unwrap();
    assert_eq!(env["propertySources"][0]["source"]["pool.size"], 8);
    server.stop().await;
}

/// Regression (issue 18): YAML's `null` went out as JSON `null`, which Spring's client takes as
/// "not set", so a lower document's value showed through; Spring's server sends `""`.
#[tokio::test]
async fn a_null_value_blanks_out_a_lower_one_as_in_spring() {
    let (_dir, server) = seeded().await;
    server.put_yaml("orders/dev/main", "shared: ~\n").await;
    let env = server.get_json("/orders/dev").await;
    assert_eq!(env["propertySources"][0]["source"]["shared"], "");
    server.stop().await;
}

/// Regression (issue 18): a label under which nothing is stored was an empty Environment, so a
/// client given several labels (`label: feature-x,main`) stopped at the first; Spring's git
/// backend answers 404 for a branch that does not exist, and the client goes on to the next.
#[tokio::test]
async fn an_unknown_label_is_a_404_so_clients_try_the_next() {
    let (_dir, server) = seeded().await;
    let missing = server.get("/orders/dev/feature-x").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_such_label");
    // The default label never is: an empty store still answers an (empty) Environment.
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = TestServer::start(config_in(empty_dir.path())).await;
    assert_eq!(
        empty.get_json("/orders/dev/main").await["propertySources"],
        serde_json::json!([])
    );
    empty.stop().await;
    server.stop().await;
}

/// Regression (issue 18): `spring.cloud.config.name: orders,db` (several names in one request,
/// documented by Spring) was refused with 400, which fails the client's start. The later name
/// overrides the earlier, each profile's documents above the plain ones, as Spring Boot loads
/// them.
#[tokio::test]
async fn several_application_names_merge_the_later_over_the_earlier() {
    let (_dir, server) = seeded().await;
    server
        .put_yaml("db/default/main", "timeout: 3s\npool:\n  size: 16\n")
        .await;
    let env = server.get_json("/orders,db/dev").await;
    assert_eq!(env["name"], "orders,db");
    assert_eq!(
        source_names(&env),
        [
            "msakit:main/orders-dev.yml",
            "msakit:main/db.yml",
            "msakit:main/orders.yml",
            "msakit:main/application.yml"
        ]
    );
    let bad = server.get("/orders,../dev").await;
    assert_eq!(bad.status(), 400);
    server.stop().await;
}

/// Answers are kept rendered between changes (`http/rendered.rs`): a change anywhere is in the
/// very next answer, in both forms and in the native resolve, and a shared document's change is
/// in every application's answer.
#[tokio::test]
async fn a_change_is_in_the_next_answer_of_every_kind() {
    let (_dir, server) = seeded().await;
    let client = reqwest::Client::new();
    let v2 = |path: &str| {
        client
            .get(format!("{}{path}", server.url))
            .header(
                "accept",
                "application/vnd.spring-cloud.config-server.v2+json",
            )
            .send()
    };
    for round in 0..3 {
        let timeout = format!("{round}s");
        server
            .put_yaml(
                "application/default/main",
                &format!("shared: base\ntimeout: {timeout}\n"),
            )
            .await;
        server
            .put_yaml("orders/dev/main", &format!("pool:\n  size: {round}\n"))
            .await;
        for _ in 0..2 {
            let env = server.get_json("/orders/dev").await;
            assert_eq!(env["propertySources"][0]["source"]["pool.size"], round);
            let shared = server.get_json("/billing/default").await;
            assert_eq!(
                shared["propertySources"][0]["source"]["timeout"],
                timeout.as_str()
            );
            let env: Value = v2("/orders/dev").await.unwrap().json().await.unwrap();
            assert_eq!(
                env["propertySources"][0]["source"]["pool.size"]["value"],
                round
            );
            let resolved = server.get_json("/v1/resolve/orders/dev/main").await;
            assert_eq!(resolved["properties"]["pool.size"], round);
        }
    }
}
