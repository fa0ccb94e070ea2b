//! The `msakit-gateway` binary as users run it: a config file, TLS from flags and variables,
//! HTTP/2 by ALPN, and a clean exit on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{upstream, wait_until};

#[tokio::test]
async fn the_binary_serves_https_with_http2_and_stops_on_sigterm() {
    let (target, _) = upstream("t").await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, contents: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_pem = write("gateway.pem", cert.pem());
    let key_pem = write("gateway.key", key.serialize_pem());
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, admin) = (free(), free());
    let config = write(
        "gateway.yaml",
        format!(
            "listen: 127.0.0.1:1\nroutes:\n  routes:\n    - {{ id: all, uri: 'http://{target}' }}\n"
        ),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_msakit-gateway"))
        .arg("--config")
        .arg(&config)
        // Flags and variables over the file.
        .args(["--listen", &format!("127.0.0.1:{port}"), "--tls-cert"])
        .arg(&cert_pem)
        .env("MSAKIT_GATEWAY_TLS_KEY", &key_pem)
        .env("MSAKIT_GATEWAY_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Stopped(Some(child));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/x");
    wait_until(Duration::from_secs(20), || async {
        client.get(&url).send().await.is_ok()
    })
    .await;
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    let health: Value = reqwest::get(format!("http://127.0.0.1:{admin}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "UP");
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.as_ref().unwrap().id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut process = child.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || process.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

/// Kills the child if the test ends before it was stopped.
struct Stopped(Option<std::process::Child>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
