//! Routes reloaded live from a file and from the config server; a bad set is refused and the
//! routes in force stay; connections are not dropped.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::support::{Gateway, config_server, upstream, wait_until};

#[tokio::test]
async fn a_routes_file_is_followed_and_a_bad_one_refused() {
    let (a, a_state) = upstream("a").await;
    let (b, _) = upstream("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, format!("routes: [{{ id: r, uri: 'http://{a}' }}]")).unwrap();
    let config = msakit_gateway::GatewayConfig {
        routes_file: Some(file.clone()),
        shutdown_grace: Duration::from_secs(2),
        ..Default::default()
    };
    let gateway = Gateway::start(config).await;
    assert_eq!(
        gateway.get("/x").await.json::<Value>().await.unwrap()["upstream"],
        "a"
    );
    // A stream open across the reload keeps going.
    let mut sse = gateway.get("/sse").await.bytes_stream();
    assert_eq!(&sse.next().await.unwrap().unwrap()[..], b"data: first\n\n");
    // Written as editors do: a new file renamed over the old one.
    let next = dir.path().join("routes.yaml.new");
    std::fs::write(&next, format!("routes: [{{ id: r, uri: 'http://{b}' }}]")).unwrap();
    std::fs::rename(&next, &file).unwrap();
    wait_until(Duration::from_secs(10), || async {
        gateway.get("/x").await.json::<Value>().await.unwrap()["upstream"] == "b"
    })
    .await;
    a_state.go_on.notify_one();
    assert_eq!(&sse.next().await.unwrap().unwrap()[..], b"data: second\n\n");
    let status = gateway.admin_json("/admin/routes").await;
    assert_eq!(status["version"], 2);
    assert!(status["source"].as_str().unwrap().starts_with("file:"));
    // Not YAML of routes, then a set that does not compile: refused, the routes stay.
    std::fs::write(&file, "routes: [{ id: r, uri: 'http://x', unknown: 1 }]").unwrap();
    wait_until(Duration::from_secs(10), || async {
        gateway.admin_json("/admin/routes").await["refused"] == 1
    })
    .await;
    std::fs::write(&file, "routes: [{ id: r, uri: 'ftp://x' }]").unwrap();
    wait_until(Duration::from_secs(10), || async {
        gateway.admin_json("/admin/routes").await["refused"] == 2
    })
    .await;
    let status = gateway.admin_json("/admin/routes").await;
    assert!(
        status["last_error"].as_str().unwrap().contains("uri"),
        "{status}"
    );
    assert_eq!(status["version"], 2);
    assert_eq!(
        gateway.get("/x").await.json::<Value>().await.unwrap()["upstream"],
        "b"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn routes_follow_a_config_server_document() {
    let (a, _) = upstream("a").await;
    let (b, _) = upstream("b").await;
    let dir = tempfile::tempdir().unwrap();
    let server = config_server(dir.path()).await;
    let put = |uri: String| {
        let (client, url) = (
            server.client.clone(),
            server.at("/v1/config/gateway/default/main"),
        );
        async move {
            let response = client
                .put(url)
                .header("content-type", "application/yaml")
                .body(format!(
                    "routes:\n  - id: r\n    uri: {uri}\n    predicates: {{ path: [/x] }}\n"
                ))
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "{}",
                response.text().await.unwrap()
            );
        }
    };
    put(format!("http://{a}")).await;
    let data = tempfile::tempdir().unwrap();
    let config = msakit_gateway::GatewayConfig {
        config_server: vec![server.url.clone()],
        routes_from_config: Some(msakit_gateway::RoutesFromConfig {
            application: "gateway".into(),
            profiles: vec!["default".into()],
            label: None,
        }),
        data_dir: Some(data.path().to_owned()),
        shutdown_grace: Duration::from_secs(2),
        ..Default::default()
    };
    let gateway = Gateway::start(config).await;
    assert_eq!(
        gateway.get("/x").await.json::<Value>().await.unwrap()["upstream"],
        "a"
    );
    put(format!("http://{b}")).await;
    wait_until(Duration::from_secs(10), || async {
        gateway.get("/x").await.json::<Value>().await.unwrap()["upstream"] == "b"
    })
    .await;
    // A document whose routes do not compile is refused by the gateway.
    put("ftp://nowhere".into()).await;
    wait_until(Duration::from_secs(10), || async {
        gateway.admin_json("/admin/routes").await["refused"] == 1
    })
    .await;
    assert_eq!(
        gateway.get("/x").await.json::<Value>().await.unwrap()["upstream"],
        "b"
    );
    let status = gateway.admin_json("/admin/routes").await;
    assert_eq!(status["source"], "config:gateway/default/(default)");
    gateway.stop().await;
}
