//! Restarts keep everything; and `kill -9` in the middle of a stream of writes loses none that
//! was acknowledged.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{KEY, TestServer, config_in};

#[tokio::test]
async fn a_restart_keeps_documents_history_schemas_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config_in(dir.path())).await;
    server.put_yaml("orders/default/main", "a: 1\n").await;
    server.put_yaml("orders/default/main", "a: 2\n").await;
    let schema = serde_json::json!({"properties": {"a": {"type": "integer"}}});
    server
        .client
        .put(server.at("/v1/schemas/orders"))
        .json(&schema)
        .send()
        .await
        .unwrap();
    let index = server.resolve("orders/default/main").await["index"].clone();
    server.stop().await;

    let server = TestServer::start(config_in(dir.path())).await;
    let resolved = server.resolve("orders/default/main").await;
    assert_eq!(resolved["properties"]["a"], 2);
    assert_eq!(resolved["index"], index);
    let history = server
        .get_json("/v1/config/orders/default/main/history")
        .await;
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
    let refused = server
        .put("orders/default/main", "application/yaml", "a: text\n")
        .await;
    assert_eq!(refused.status(), 422, "the schema survived");
    server.stop().await;
}

#[tokio::test]
async fn sigkill_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_msakit-config-server"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .env("MSAKIT_CONFIG_ENCRYPT_KEY", KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (child, format!("http://127.0.0.1:{port}"))
    };
    let client = reqwest::Client::new();
    let ready = |url: String| {
        let client = client.clone();
        async move {
            for _ in 0..200 {
                if client.get(format!("{url}/health")).send().await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the server did not start");
        }
    };
    let (mut child, url) = start();
    ready(url.clone()).await;

    // Four writers; kill -9 while they run.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url, acknowledged) = (client.clone(), url.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let body = format!("writer: {w}\nn: {n}\n");
                    let response = client
                        .put(format!("{url}/v1/config/app{w}/default/main"))
                        .header("content-type", "application/yaml")
                        .body(body)
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 200 => {
                            let version = r
                                .json::<serde_json::Value>()
                                .await
                                .map(|v| v["version"].as_u64());
                            if let Ok(Some(version)) = version {
                                acknowledged.lock().unwrap().push((w, n, version));
                            }
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    for writer in writers {
        let _ = writer.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 20,
        "the writers made progress: {}",
        acknowledged.len()
    );

    let (mut child, url) = start();
    ready(url.clone()).await;
    for w in 0..4 {
        let last = acknowledged
            .iter()
            .filter(|(writer, ..)| *writer == w)
            .max_by_key(|(_, _, v)| *v);
        let Some(&(_, n, version)) = last else {
            continue;
        };
        let doc: serde_json::Value = client
            .get(format!("{url}/v1/config/app{w}/default/main"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The last acknowledged version is there (a later, unacknowledged one may be too).
        assert!(
            doc["version"].as_u64().unwrap() >= version,
            "writer {w}: {doc}"
        );
        let history: serde_json::Value = client
            .get(format!("{url}/v1/config/app{w}/default/main/history"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(history["versions"].as_array().unwrap().len() as u64 >= version);
        if doc["version"].as_u64() == Some(version) {
            assert_eq!(doc["content"], format!("writer: {w}\nn: {n}\n"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
