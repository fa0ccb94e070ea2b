//! Tokens with read and write scopes; the token's name is the author of writes.

use msakit_config_server::config::{Scope, TokenConfig};

use crate::support::{TestServer, config_in};

#[tokio::test]
async fn scopes_and_authors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.auth.tokens = vec![
        TokenConfig {
            name: "ci".into(),
            token: "write-token-123".into(),
            scopes: vec![Scope::Read, Scope::Write],
        },
        TokenConfig {
            name: "service".into(),
            token: "read-token-456".into(),
            scopes: vec![Scope::Read],
        },
    ];
    let server = TestServer::start(config).await;
    let put = |token: Option<&'static str>| {
        let mut request = server
            .client
            .put(server.at("/v1/config/orders/default/main"))
            .header("content-type", "application/yaml")
            .body("a: 1\n");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(put(None).await.unwrap().status(), 401);
    assert_eq!(put(Some("read-token-456")).await.unwrap().status(), 403);
    assert_eq!(put(Some("write-token-123")).await.unwrap().status(), 200);

    let anonymous = server
        .client
        .get(server.at("/v1/resolve/orders/default/main"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let reader = server
        .client
        .get(server.at("/v1/config/orders/default/main"))
        .basic_auth("whoever", Some("read-token-456"))
        .send()
        .await
        .unwrap();
    assert_eq!(reader.status(), 200);
    let doc: serde_json::Value = reader.json().await.unwrap();
    assert_eq!(doc["author"], "ci");
    // Regression (issue 18): Spring's config client sends `spring.cloud.config.token` as
    // `X-Config-Token`, which we ignored (401, and a failed start).
    let spring = |token: &'static str| {
        server
            .client
            .get(server.at("/orders/default/main"))
            .header("x-config-token", token)
            .send()
    };
    assert_eq!(spring("read-token-456").await.unwrap().status(), 200);
    assert_eq!(spring("wrong").await.unwrap().status(), 401);
    let encrypt = server
        .client
        .post(server.at("/encrypt"))
        .bearer_auth("read-token-456")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(encrypt.status(), 403);
    assert_eq!(
        server
            .client
            .get(server.at("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.stop().await;
}
