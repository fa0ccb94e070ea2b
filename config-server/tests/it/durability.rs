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

/// `kill -9` twenty times in the middle of a stream of writes from four writers: every write that
/// was acknowledged is there afterwards, with the version it was acknowledged with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_during_writes_lose_no_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

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
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ready = |url: String| {
        let client = client.clone();
        async move {
            for _ in 0..400 {
                if client.get(format!("{url}/health")).send().await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the server did not start");
        }
    };
    let current = Arc::new(Mutex::new(String::new()));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, current, acknowledged, stop) = (
                client.clone(),
                current.clone(),
                acknowledged.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let url = current.lock().unwrap().clone();
                    let response = client
                        .put(format!("{url}/v1/config/app{w}/default/main"))
                        .header("content-type", "application/yaml")
                        .header("x-msakit-message", format!("w{w}-n{n}"))
                        .body(format!("writer: {w}\nn: {n}\n"))
                        .send()
                        .await;
                    let version = match response {
                        Ok(r) if r.status() == 200 => r
                            .json::<serde_json::Value>()
                            .await
                            .ok()
                            .and_then(|v| v["version"].as_u64()),
                        _ => None,
                    };
                    match version {
                        Some(version) => acknowledged.lock().unwrap().push((w, n, version)),
                        // Not acknowledged (the server is down or died mid-write): try on.
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            })
        })
        .collect();
    let mut kills = 0;
    let mut acknowledged_before = 0;
    while kills < 20 {
        let (mut child, url) = start();
        ready(url.clone()).await;
        *current.lock().unwrap() = url;
        // Kill it while writes go on: once this server has acknowledged one (however long a
        // loaded machine takes to get there), then a random moment later.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while acknowledged.lock().unwrap().len() == acknowledged_before {
            assert!(
                std::time::Instant::now() < deadline,
                "no write acknowledged within 60 s before kill {}",
                kills + 1
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(..200))).await;
        Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        let _ = child.wait();
        kills += 1;
        acknowledged_before = acknowledged.lock().unwrap().len();
    }
    let (mut child, url) = start();
    ready(url.clone()).await;
    stop.store(true, Ordering::SeqCst);
    *current.lock().unwrap() = url.clone();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    for w in 0..4 {
        let history: serde_json::Value = client
            .get(format!("{url}/v1/config/app{w}/default/main/history"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages: std::collections::HashMap<u64, String> = history["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_u64().unwrap(),
                    v["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for (_, n, version) in acknowledged.iter().filter(|(writer, ..)| *writer == w) {
            assert_eq!(
                messages.get(version).map(String::as_str),
                Some(format!("w{w}-n{n}").as_str()),
                "writer {w}: acknowledged write {n} as version {version} is missing"
            );
        }
    }
    assert!(
        acknowledged.len() > 100,
        "{} writes acknowledged",
        acknowledged.len()
    );
    eprintln!(
        "{} writes acknowledged across {kills} SIGKILLs, all found",
        acknowledged.len()
    );
    let _ = child.kill();
    let _ = child.wait();
}
