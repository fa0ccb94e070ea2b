//! The audit log: every write, who made it and when, in order, paged, and kept across restarts.

use msakit_config_server::config::{Scope, TokenConfig};
use serde_json::Value;

use crate::support::{TestServer, config_in};

#[tokio::test]
async fn every_write_is_audited_with_its_author_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.auth.tokens = vec![
        TokenConfig {
            name: "alice".into(),
            token: "alice-secret".into(),
            scopes: vec![Scope::Read, Scope::Write],
        },
        TokenConfig {
            name: "reader".into(),
            token: "reader-secret".into(),
            scopes: vec![Scope::Read],
        },
    ];
    let server = TestServer::start(config.clone()).await;
    let as_alice = |request: reqwest::RequestBuilder| request.bearer_auth("alice-secret");
    let doc = server.at("/v1/config/orders/prod/main");
    for body in ["a: 1\n", "a: 2\n"] {
        let response = as_alice(server.client.put(&doc))
            .header("content-type", "application/yaml")
            .header("x-msakit-message", format!("set {body}").trim().to_owned())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let steps = [
        as_alice(server.client.post(format!("{doc}/rollback")))
            .json(&serde_json::json!({"version": 1})),
        as_alice(server.client.put(server.at("/v1/schemas/orders")))
            .json(&serde_json::json!({"type": "object"})),
        as_alice(
            server
                .client
                .put(server.at("/v1/files/orders/prod/main/nginx.conf")),
        )
        .body("listen 80;"),
        as_alice(
            server
                .client
                .delete(server.at("/v1/files/orders/prod/main/nginx.conf")),
        ),
        as_alice(server.client.delete(&doc)),
    ];
    for step in steps {
        let response = step.send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    // Unauthenticated readers see nothing; a reader sees everything.
    let anonymous = server
        .client
        .get(server.at("/v1/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let audit = |since: u64, limit: u64| {
        let request = server
            .client
            .get(server.at(&format!("/v1/audit?since={since}&limit={limit}")))
            .bearer_auth("reader-secret");
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let page = audit(0, 100).await;
    let actions: Vec<(&str, &str, &str)> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("write", "orders/prod/main@1", "alice"),
            ("write", "orders/prod/main@2", "alice"),
            ("rollback", "orders/prod/main@3", "alice"),
            ("schema", "orders", "alice"),
            ("file", "orders/prod/main:nginx.conf", "alice"),
            ("file_delete", "orders/prod/main:nginx.conf", "alice"),
            ("delete", "orders/prod/main@4", "alice"),
        ]
    );
    assert_eq!(page["entries"][0]["detail"], "set a: 1");
    assert_eq!(page["next"], 7);
    // Paging.
    let second = audit(2, 2).await;
    assert_eq!(second["entries"][0]["seq"], 3);
    assert_eq!(second["entries"].as_array().unwrap().len(), 2);
    assert_eq!(second["next"], 4);
    server.stop().await;

    // Durable: the same log after a restart, and numbering goes on.
    let server = TestServer::start(config).await;
    let page = server
        .client
        .get(server.at("/v1/audit"))
        .bearer_auth("reader-secret")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 7);
}
