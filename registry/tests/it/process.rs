//! The real binary: configured from a YAML file, the environment and flags, stopped by SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn the_binary_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("registry.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:1\nlease: { default_ttl: 20s }\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_msakit-registry"))
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("MSAKIT_REGISTRY_DATA_DIR", dir.path().join("data"))
        .env("MSAKIT_REGISTRY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the registry logs its address")
            .unwrap();
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        if log["fields"]["message"] == "registry listening" {
            break log["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/services/orders/instances/o1");
    let granted: serde_json::Value = client
        .put(&url)
        .json(&serde_json::json!({"host": "h", "port": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        granted["lease"]["ttl_ms"], 20_000,
        "the file's default TTL applies"
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("registrations flushed")),
        "{rest:?}"
    );
    assert!(dir.path().join("data/registry.redb").exists());
    let _ = Duration::ZERO;
}
