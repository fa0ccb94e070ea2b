//! Write, read, versions, compare-and-set, history, rollback and delete.

use serde_json::Value;

use crate::support::{TestServer, config_in};

#[tokio::test]
async fn versions_history_rollback_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    let doc = "orders/default/main";
    assert_eq!(server.put_yaml(doc, "pool: 4\n").await, 1);
    let response = server
        .client
        .put(server.at(&format!("/v1/config/{doc}")))
        .header("content-type", "application/yaml")
        .header("x-msakit-message", "bigger pool")
        .body("pool: 8\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["etag"], "\"2\"");

    let got = server
        .client
        .get(server.at(&format!("/v1/config/{doc}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["etag"], "\"2\"");
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["content"], "pool: 8\n");
    assert_eq!(got["author"], "anonymous");
    assert_eq!(got["message"], "bigger pool");
    assert_eq!(got["format"], "yaml");

    // `master` is an alias of `main`.
    let alias = server.get_json("/v1/config/orders/default/master").await;
    assert_eq!(alias["version"], 2);

    // Compare-and-set: a stale If-Match is refused, the current one accepted.
    let stale = server
        .client
        .put(server.at(&format!("/v1/config/{doc}")))
        .header("content-type", "application/yaml")
        .header("if-match", "\"1\"")
        .body("pool: 16\n")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["error"]["code"], "version_conflict");
    let fresh = server
        .client
        .put(server.at(&format!("/v1/config/{doc}")))
        .header("content-type", "application/yaml")
        .header("if-match", "2")
        .body("pool: 16\n")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);

    // Rolling back to the first version is a new version; nothing is lost.
    let rolled = server
        .client
        .post(server.at(&format!("/v1/config/{doc}/rollback")))
        .json(&serde_json::json!({"version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(rolled.status(), 200);
    let rolled: Value = rolled.json().await.unwrap();
    assert_eq!(rolled["version"], 4);
    assert_eq!(
        server.get_json(&format!("/v1/config/{doc}")).await["content"],
        "pool: 4\n"
    );
    let history = server.get_json(&format!("/v1/config/{doc}/history")).await;
    let versions: Vec<u64> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [4, 3, 2, 1]);
    assert_eq!(history["versions"][0]["rolled_back_to"], 1);

    // Delete is a tombstone: the document is gone, its history is not, and it can come back.
    let deleted = server
        .client
        .delete(server.at(&format!("/v1/config/{doc}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let gone = server
        .client
        .get(server.at(&format!("/v1/config/{doc}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let history = server.get_json(&format!("/v1/config/{doc}/history")).await;
    assert_eq!(history["versions"][0]["deleted"], true);
    assert_eq!(history["versions"].as_array().unwrap().len(), 5);
    let back = server
        .client
        .post(server.at(&format!("/v1/config/{doc}/rollback")))
        .json(&serde_json::json!({"version": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    assert_eq!(
        server.get_json(&format!("/v1/config/{doc}")).await["content"],
        "pool: 8\n"
    );
    let missing = server
        .client
        .post(server.at(&format!("/v1/config/{doc}/rollback")))
        .json(&serde_json::json!({"version": 99}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

/// Many writers at once share fsyncs (group commit) but each still gets its own version, in an
/// order the history agrees with, and `If-Match` still lets exactly one of racing writers win.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_distinct_versions_and_one_compare_and_set_winner() {
    let dir = tempfile::tempdir().unwrap();
    let server = std::sync::Arc::new(TestServer::start(config_in(dir.path())).await);
    let doc = "burst/default/main";
    let writes: Vec<_> = (0..48)
        .map(|i| {
            let server = std::sync::Arc::clone(&server);
            tokio::spawn(async move { server.put_yaml(doc, &format!("n: {i}\n")).await })
        })
        .collect();
    let mut versions = Vec::new();
    for write in writes {
        versions.push(write.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=48).collect::<Vec<u64>>(),
        "one version each, no gaps"
    );
    let history = server.get_json(&format!("/v1/config/{doc}/history")).await;
    assert_eq!(history["versions"].as_array().unwrap().len(), 48);

    // 16 writers race with the same If-Match: exactly one wins.
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let server = std::sync::Arc::clone(&server);
            tokio::spawn(async move {
                server
                    .client
                    .put(server.at(&format!("/v1/config/{doc}")))
                    .header("content-type", "application/yaml")
                    .header("if-match", "48")
                    .body(format!("winner: {i}\n"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        15,
        "{statuses:?}"
    );
    assert_eq!(
        server.get_json(&format!("/v1/config/{doc}")).await["version"],
        49
    );
}

#[tokio::test]
async fn documents_per_application_are_capped_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.max_documents_per_application = 2;
    let server = TestServer::start(config).await;
    server.put_yaml("capped/default/main", "a: 1\n").await;
    server.put_yaml("capped/dev/main", "a: 2\n").await;
    let refused = server
        .put("capped/prod/main", "application/yaml", "a: 3\n")
        .await;
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_documents");
    // Existing documents still take new versions, other applications are unaffected.
    assert_eq!(server.put_yaml("capped/dev/main", "a: 4\n").await, 2);
    server.put_yaml("other/prod/main", "a: 5\n").await;
    // Deleting one makes room.
    let deleted = server
        .client
        .delete(server.at("/v1/config/capped/dev/main"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    server.put_yaml("capped/prod/main", "a: 3\n").await;
    let metrics = server
        .client
        .get(server.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"msakit_limit_rejections_total{limit="capacity"} 1"#),
        "{metrics}"
    );
}
