//! Starts real registry servers on port 0 in temp dirs (server-kit's test support, with the
//! registry's own calls), and reads their SSE streams.

use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use msakit_registry::RegistryConfig;
use msakit_server_kit::testing as kit;
use serde_json::{Value, json};

pub(crate) use kit::{SseStream, wait_for_text, wait_until};

/// A config with short leases and a fast sweeper, for tests.
pub(crate) fn fast_config() -> RegistryConfig {
    let mut config = RegistryConfig::default();
    config.lease.min_ttl = Duration::from_millis(100);
    config.lease.default_ttl = Duration::from_secs(15);
    config.sweep_interval = Duration::from_millis(20);
    config.shutdown_grace = Duration::from_secs(2);
    config.watch.keep_alive = Duration::from_millis(200);
    config
}

/// A running registry.
pub(crate) struct TestServer(kit::TestServer<msakit_registry::ServerError>);

impl Deref for TestServer {
    type Target = kit::TestServer<msakit_registry::ServerError>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl TestServer {
    pub(crate) async fn start(config: RegistryConfig) -> TestServer {
        TestServer(
            kit::TestServer::start(|listener, stop| msakit_registry::run(listener, config, stop))
                .await,
        )
    }

    /// Starts a server whose registrations live in `dir`.
    pub(crate) async fn start_in(dir: &Path) -> TestServer {
        let mut config = fast_config();
        config.data_dir = Some(dir.to_owned());
        TestServer::start(config).await
    }

    /// Shuts down gracefully and waits for the end.
    pub(crate) async fn stop(self) {
        self.0.stop().await;
    }

    pub(crate) async fn register(&self, service: &str, id: &str, body: Value) -> reqwest::Response {
        self.client
            .put(self.at(&format!("/v1/services/{service}/instances/{id}")))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Registers `host:port` with a lease of `ttl_ms`; panics unless it worked.
    pub(crate) async fn up(&self, service: &str, id: &str, port: u16, ttl_ms: u64) {
        let response = self
            .register(
                service,
                id,
                json!({"host": "127.0.0.1", "port": port, "lease_ttl_ms": ttl_ms}),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    pub(crate) async fn heartbeat(&self, service: &str, id: &str) -> reqwest::StatusCode {
        self.client
            .put(self.at(&format!("/v1/services/{service}/instances/{id}/heartbeat")))
            .send()
            .await
            .unwrap()
            .status()
    }

    pub(crate) async fn instance_ids(&self, service: &str) -> Vec<String> {
        let body = self.get_json(&format!("/v1/services/{service}")).await;
        body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    }
}
