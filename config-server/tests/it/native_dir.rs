//! `--native-dir`: a directory in Spring's native layout, served read-only and reloaded on change.

use std::time::Duration;

use crate::support::{SseStream, TestServer, config_in, wait_until};

/// Regression: a directory given with `..` in its path (as `msakit-bench` does) served nothing,
/// every file's full path failing the check against `..`.
#[tokio::test]
async fn a_directory_given_through_dot_dot_is_served() {
    let data = tempfile::tempdir().unwrap();
    let native = tempfile::tempdir().unwrap();
    std::fs::create_dir(native.path().join("elsewhere")).unwrap();
    std::fs::write(native.path().join("orders.yml"), "pool: 4\n").unwrap();
    let mut config = config_in(data.path());
    config.native_dir = Some(native.path().join("elsewhere/.."));
    let server = TestServer::start(config).await;
    assert_eq!(
        server.resolve("orders/default/main").await["properties"]["pool"],
        4
    );
}

#[tokio::test]
async fn serves_reloads_and_pushes_a_directory() {
    let data = tempfile::tempdir().unwrap();
    let native = tempfile::tempdir().unwrap();
    let dir = native.path();
    std::fs::write(dir.join("application.yml"), "shared: base\nport: 80\n").unwrap();
    std::fs::write(dir.join("orders.yml"), "pool: 4\n").unwrap();
    std::fs::write(dir.join("orders-dev.properties"), "pool=8\n").unwrap();
    std::fs::create_dir(dir.join("release")).unwrap();
    std::fs::write(dir.join("release/orders.yml"), "pool: 2\n").unwrap();
    std::fs::write(
        dir.join("nginx.conf"),
        "listen ${port};\nupstream ${upstream:orders};\n",
    )
    .unwrap();
    let mut config = config_in(data.path());
    config.native_dir = Some(dir.to_owned());
    let server = TestServer::start(config).await;

    let resolved = server.resolve("orders/dev/main").await;
    assert_eq!(resolved["properties"]["pool"], "8");
    assert_eq!(resolved["properties"]["shared"], "base");
    assert_eq!(
        server.resolve("orders/default/release").await["properties"]["pool"],
        2
    );
    let history = server
        .get_json("/v1/config/orders/default/main/history")
        .await;
    assert_eq!(history["versions"][0]["author"], "native-dir");

    // A plain file, placeholders filled from the application's configuration.
    let conf = server
        .client
        .get(server.at("/orders/dev/main/nginx.conf"))
        .send()
        .await
        .unwrap();
    assert_eq!(conf.status(), 200);
    assert_eq!(conf.text().await.unwrap(), "listen 80;\nupstream orders;\n");
    for bad in [
        "/orders/dev/main/..%2F..%2Fetc%2Fpasswd",
        "/orders/dev/main/.hidden",
        "/orders/dev/main/missing.conf",
    ] {
        let r = server.client.get(server.at(bad)).send().await.unwrap();
        assert!(
            r.status() == 404 || r.status() == 400,
            "{bad}: {}",
            r.status()
        );
    }

    // Read-only through the API.
    let refused = server
        .put("orders/default/main", "application/yaml", "pool: 99\n")
        .await;
    assert_eq!(refused.status(), 409);

    // A file change is reloaded and pushed.
    let mut watch = SseStream::open(
        &server.client,
        &server.at("/v1/watch/orders/default/main"),
        None,
    )
    .await;
    watch.expect(Duration::from_secs(5)).await;
    std::fs::write(dir.join("orders.yml"), "pool: 5\n").unwrap();
    let pushed = watch.expect(Duration::from_secs(5)).await.data;
    assert_eq!(pushed["properties"]["pool"], 5);

    // A broken file keeps its last good version and shows in /health.
    std::fs::write(dir.join("orders.yml"), "pool: [broken\n").unwrap();
    wait_until(Duration::from_secs(5), || async {
        server.get_json("/health").await["status"] == "DEGRADED"
    })
    .await;
    let health = server.get_json("/health").await;
    assert!(
        health["native_dir_errors"]["orders.yml"]
            .as_str()
            .unwrap()
            .contains("line"),
        "{health}"
    );
    assert_eq!(
        server.resolve("orders/default/main").await["properties"]["pool"],
        5
    );
    std::fs::write(dir.join("orders.yml"), "pool: 6\n").unwrap();
    wait_until(Duration::from_secs(5), || async {
        server.get_json("/health").await["status"] == "UP"
    })
    .await;

    // A removed file is a deletion.
    std::fs::remove_file(dir.join("orders-dev.properties")).unwrap();
    wait_until(Duration::from_secs(5), || async {
        server.resolve("orders/dev/main").await["properties"]["pool"] == 6
    })
    .await;
    server.stop().await;
}
