//! `{cipher}` values: encrypted at rest, decrypted for authorised readers; `/encrypt` and
//! `/decrypt`; nothing in plain text on disk.

use crate::support::{TestServer, config_in};

#[tokio::test]
async fn secrets_round_trip_and_never_reach_the_disk_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    let secret = "hunter2-very-secret-password";
    let sealed = server
        .client
        .post(server.at("/encrypt"))
        .body(secret)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!sealed.contains(secret));
    let opened = server
        .client
        .post(server.at("/decrypt"))
        .body(format!("{{cipher}}{sealed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.text().await.unwrap(), secret);

    server
        .put_yaml(
            "orders/default/main",
            &format!("db:\n  password: '{{cipher}}{sealed}'\n  user: app\n"),
        )
        .await;
    let resolved = server.resolve("orders/default/main").await;
    assert_eq!(resolved["properties"]["db.password"], secret);
    // The stored document keeps the ciphertext.
    let stored = server.get_json("/v1/config/orders/default/main").await;
    assert!(stored["content"].as_str().unwrap().contains("{cipher}"));

    // A {cipher} value this server did not encrypt is refused.
    let bogus = server
        .put(
            "orders/dev/main",
            "application/yaml",
            "key: '{cipher}not-real'\n",
        )
        .await;
    assert_eq!(bogus.status(), 422);
    server.stop().await;

    // Nothing under the data directory holds the plain text.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "plain text found on disk"
        );
    }
}

#[tokio::test]
async fn a_value_the_key_cannot_open_is_reported_as_spring_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    let sealed = server
        .client
        .post(server.at("/encrypt"))
        .body("x")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server
        .put_yaml(
            "orders/default/main",
            &format!("token: '{{cipher}}{sealed}'\n"),
        )
        .await;
    server.stop().await;
    // Restart with another key: the stored value no longer opens.
    let mut config = config_in(dir.path());
    config.secrets.key = Some("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=".into());
    let server = TestServer::start(config).await;
    let resolved = server.resolve("orders/default/main").await;
    assert_eq!(resolved["properties"]["invalid.token"], "<n/a>");
    assert!(resolved["properties"].get("token").is_none());
    server.stop().await;
}
