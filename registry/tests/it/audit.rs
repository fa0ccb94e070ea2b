//! The audit log: operators' overrides and deregistrations, with the token that made them and
//! the client's address; registrations and heartbeats are not audited.

use crate::support::{TestServer, fast_config};

#[tokio::test]
async fn overrides_and_deregistrations_are_audited_with_their_token() {
    let mut config = fast_config();
    config.auth.tokens = vec!["first-secret".into(), "second-secret".into()];
    let server = TestServer::start(config).await;
    let client = &server.client;
    for id in ["o1", "o2"] {
        let response = client
            .put(server.at(&format!("/v1/services/orders/instances/{id}")))
            .bearer_auth("first-secret")
            .json(&serde_json::json!({"host": "10.0.0.1", "port": 80}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let drain = client
        .put(server.at("/v1/services/orders/instances/o1/status"))
        .bearer_auth("second-secret")
        .json(&serde_json::json!({"status": "OUT_OF_SERVICE"}))
        .send()
        .await
        .unwrap();
    assert!(drain.status().is_success());
    let cancel = client
        .delete(server.at("/eureka/apps/ORDERS/o2"))
        .bearer_auth("first-secret")
        .send()
        .await
        .unwrap();
    assert!(cancel.status().is_success());
    let undrain = client
        .put(server.at("/v1/services/orders/instances/o1/status"))
        .bearer_auth("second-secret")
        .json(&serde_json::json!({"status": null}))
        .send()
        .await
        .unwrap();
    assert!(undrain.status().is_success());

    let page = server.get_json("/v1/audit").await;
    let entries = page["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("override", "token-2", "OUT_OF_SERVICE"),
            ("deregister", "token-1", "eureka"),
            ("clear_override", "token-2", ""),
        ],
        "{page}"
    );
    assert!(
        entries[0]["target"]
            .as_str()
            .unwrap()
            .ends_with("/orders/o1")
    );
    assert_eq!(entries[0]["client"], "127.0.0.1");
    assert!(!page.to_string().contains("secret"), "tokens never appear");
    let later = server.get_json("/v1/audit?since=2").await;
    assert_eq!(later["entries"].as_array().unwrap().len(), 1);
    assert_eq!(later["next"], 3);
    let bad = client
        .get(server.at("/v1/audit?since=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
