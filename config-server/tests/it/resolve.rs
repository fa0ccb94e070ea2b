//! Spring's precedence, as Spring Boot loads documents for Spring's own server: every profile's
//! documents over the plain ones (app+profile, application+profile, app, application); several
//! profiles, the last wins.

use serde_json::json;

use crate::support::{TestServer, config_in};

#[tokio::test]
async fn precedence_and_multi_profile_merge() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    server
        .put_yaml(
            "application/default/main",
            "a: shared\nb: shared\nc: shared\nd: shared\ne: shared\n",
        )
        .await;
    server
        .put_yaml("application/dev/main", "b: shared-dev\nc: shared-dev\n")
        .await;
    server
        .put_yaml("orders/default/main", "c: orders\nlist: [x, y]\n")
        .await;
    server.put_yaml("orders/dev/main", "d: orders-dev\n").await;
    server
        .put_yaml("orders/eu/main", "d: orders-eu\ne: orders-eu\n")
        .await;
    let response = server
        .put(
            "orders/default/release",
            "application/json",
            r#"{"a": {"nested": true}}"#,
        )
        .await;
    assert_eq!(response.status(), 200);

    let resolved = server.resolve("orders/dev/main").await;
    let p = &resolved["properties"];
    assert_eq!(p["a"], "shared");
    assert_eq!(p["b"], "shared-dev");
    // The shared profile document outranks the application's plain one, as in Spring Boot
    // (profile-specific files are loaded in a pass of their own, above every plain file).
    assert_eq!(p["c"], "shared-dev");
    assert_eq!(p["d"], "orders-dev");
    assert_eq!(p["list[1]"], "y");
    let sources: Vec<String> = resolved["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}-{}",
                s["application"].as_str().unwrap(),
                s["profile"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            "orders-dev",
            "application-dev",
            "orders-default",
            "application-default"
        ]
    );

    // Two profiles: the last wins.
    let both = server.resolve("orders/dev,eu/main").await;
    assert_eq!(both["properties"]["d"], "orders-eu");
    assert_eq!(both["properties"]["b"], "shared-dev");
    let reversed = server.resolve("orders/eu,dev/main").await;
    assert_eq!(reversed["properties"]["d"], "orders-dev");

    // Another application inherits only the shared documents; labels are separate.
    let payments = server.resolve("payments/dev/main").await;
    assert_eq!(
        payments["properties"],
        json!({"a": "shared", "b": "shared-dev", "c": "shared-dev", "d": "shared", "e": "shared"})
    );
    let release = server.resolve("orders/default/release").await;
    assert_eq!(release["properties"], json!({"a.nested": true}));
    server.stop().await;
}
