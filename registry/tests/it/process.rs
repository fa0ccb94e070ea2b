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

/// Starts the real binary on a free port with `data_dir`; the child and its base URL, once it
/// answers.
async fn start_with_data(data_dir: &std::path::Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_msakit-registry"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if client.get(format!("{url}/health")).send().await.is_ok() {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the registry did not start");
}

/// `kill -9` with `--data-dir`: registrations (and an operator's override) made before the kill
/// are restored on restart, three times over.
#[tokio::test]
async fn sigkill_with_a_data_dir_restores_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut expected = 0;
    for round in 0..3 {
        let (mut child, url) = start_with_data(dir.path()).await;
        let listed: serde_json::Value = client
            .get(format!("{url}/v1/services/orders"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let restored = listed["instances"].as_array().map_or(0, Vec::len);
        assert_eq!(
            restored, expected,
            "round {round}: every registration restored"
        );
        if round > 0 {
            let o0 = listed["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["id"] == "r0-0")
                .unwrap();
            assert_eq!(o0["status"], "OUT_OF_SERVICE", "the override survives");
        }
        for i in 0..50 {
            let response = client
                .put(format!("{url}/v1/services/orders/instances/r{round}-{i}"))
                .json(&serde_json::json!({"host": "10.0.0.1", "port": 8000 + i, "lease_ttl_ms": 300_000}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
        if round == 0 {
            client
                .put(format!("{url}/v1/services/orders/instances/r0-0/status"))
                .json(&serde_json::json!({"status": "OUT_OF_SERVICE"}))
                .send()
                .await
                .unwrap();
        }
        expected += 50;
        // Writes go to disk behind the answer, within milliseconds; give them that, then kill.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        let _ = child.wait();
    }
}

/// The binary over TLS, set up from a flag and two variables: it requires a client certificate
/// signed by the configured client CA and refuses clients without one.
#[tokio::test]
async fn the_binary_serves_tls_and_requires_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, contents: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&server_key)
        .unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = rcgen::CertificateParams::new(vec!["operator".to_owned()])
        .unwrap()
        .self_signed(&client_key)
        .unwrap();
    let server_pem = write("server.pem", server.pem());
    let server_key = write("server.key", server_key.serialize_pem());
    let client_ca = write("client-ca.pem", client.pem());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_msakit-registry"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--tls-cert"])
        .arg(&server_pem)
        .env("MSAKIT_REGISTRY_TLS_KEY", &server_key)
        .env("MSAKIT_REGISTRY_TLS_CLIENT_CA", &client_ca)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let trusted = reqwest::Certificate::from_pem(server.pem().as_bytes()).unwrap();
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", client.pem(), client_key.serialize_pem()).as_bytes(),
    )
    .unwrap();
    let operator = reqwest::Client::builder()
        .add_root_certificate(trusted.clone())
        .identity(identity)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}");
    let mut answered = None;
    for _ in 0..400 {
        if let Ok(response) = operator.get(format!("{url}/health")).send().await {
            answered = Some(response.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(trusted)
        .build()
        .unwrap();
    let refused = anonymous.get(format!("{url}/health")).send().await;
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answered, Some(reqwest::StatusCode::OK), "served over TLS");
    assert!(refused.is_err(), "no client certificate, no answer");
    assert!(plain.is_err(), "no plain HTTP on a TLS port");
}

/// Spans leave over OTLP/HTTP when the config file's `telemetry.otlp_endpoint` (or
/// `OTEL_EXPORTER_OTLP_ENDPOINT`) says where: a request carrying
/// a `traceparent` reaches an OTLP receiver (here, one that keeps what is posted to
/// `/v1/traces`) as protobuf naming that trace.
#[tokio::test]
async fn spans_are_exported_over_otlp_to_the_configured_endpoint() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let receiver = {
        let received = Arc::clone(&received);
        axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let received = Arc::clone(&received);
                    async move {
                        assert_eq!(headers["content-type"], "application/x-protobuf");
                        received.lock().unwrap().extend_from_slice(&body);
                        ""
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The endpoint from the config file's `telemetry:` (the OTEL_* variables would win).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("registry.yaml");
    std::fs::write(
        &config,
        format!("telemetry: {{ otlp_endpoint: {collector}, sample_ratio: 1.0 }}\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_msakit-registry"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(&config)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let trace: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/services");
    let mut sent = false;
    for _ in 0..200 {
        let answer = client
            .get(&url)
            .header(
                "traceparent",
                format!("00-{trace:032x}-00f067aa0ba902b7-01"),
            )
            .send()
            .await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent, "the registry did not answer");
    let id = trace.to_be_bytes();
    let mut exported = false;
    for _ in 0..200 {
        if received.lock().unwrap().windows(16).any(|w| w == id) {
            exported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(exported, "no span of the trace reached the OTLP receiver");
}
