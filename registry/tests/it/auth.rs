//! With tokens configured, writes need a bearer token or HTTP Basic credentials.

use serde_json::json;

use crate::support::{TestServer, fast_config};

const TOKEN: &str = "s3cret-token";

#[tokio::test]
async fn writes_need_a_token_reads_do_not_unless_protected() {
    let mut config = fast_config();
    config.auth.tokens = vec![TOKEN.into()];
    let server = TestServer::start(config).await;
    let url = server.at("/v1/services/a/instances/1");
    let body = json!({"host": "h", "port": 1});

    let anonymous = server.client.put(&url).json(&body).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let error: serde_json::Value = anonymous.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unauthorized");

    let wrong = server
        .client
        .put(&url)
        .bearer_auth("wrong-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let bearer = server
        .client
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let basic = server
        .client
        .put(server.at("/v1/services/a/instances/1/heartbeat"))
        .basic_auth("anyone", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let delete = server.client.delete(&url).send().await.unwrap();
    assert_eq!(delete.status(), 401);

    // Reads stay open by default.
    assert_eq!(
        server
            .client
            .get(server.at("/v1/services/a"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn protected_reads_need_a_token_too() {
    let mut config = fast_config();
    config.auth.tokens = vec![TOKEN.into()];
    config.auth.protect_reads = true;
    let server = TestServer::start(config).await;
    assert_eq!(
        server
            .client
            .get(server.at("/v1/services"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        server
            .client
            .get(server.at("/v1/watch"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = server
        .client
        .get(server.at("/v1/services"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Health stays open for load balancers and orchestrators.
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
