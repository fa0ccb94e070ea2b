//! Starts real config servers on port 0 in temp dirs (server-kit's test support, with the config
//! server's own calls).

use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use msakit_config_server::ConfigServerConfig;
use msakit_server_kit::testing as kit;
use serde_json::Value;

pub(crate) use kit::{SseStream, wait_until};

/// A test key (base64 of 32 bytes).
pub(crate) const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A config on `dir` with a secrets key and a fast keep-alive.
pub(crate) fn config_in(dir: &Path) -> ConfigServerConfig {
    let mut config = ConfigServerConfig {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    config.secrets.key = Some(KEY.into());
    config.watch.keep_alive = Duration::from_millis(200);
    config.shutdown_grace = Duration::from_secs(2);
    config
}

/// A running config server.
pub(crate) struct TestServer(kit::TestServer<msakit_config_server::ServerError>);

impl Deref for TestServer {
    type Target = kit::TestServer<msakit_config_server::ServerError>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl TestServer {
    pub(crate) async fn start(config: ConfigServerConfig) -> TestServer {
        TestServer(
            kit::TestServer::start(|listener, stop| {
                msakit_config_server::run(listener, config, stop)
            })
            .await,
        )
    }

    /// Shuts down gracefully and waits for the end.
    pub(crate) async fn stop(self) {
        self.0.stop().await;
    }

    /// PUTs a document; returns the response.
    pub(crate) async fn put(&self, doc: &str, content_type: &str, body: &str) -> reqwest::Response {
        self.client
            .put(self.at(&format!("/v1/config/{doc}")))
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// PUTs a YAML document and asserts it was accepted; returns the new version.
    pub(crate) async fn put_yaml(&self, doc: &str, body: &str) -> u64 {
        let response = self.put(doc, "application/yaml", body).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        response.json::<Value>().await.unwrap()["version"]
            .as_u64()
            .unwrap()
    }

    pub(crate) async fn resolve(&self, path: &str) -> Value {
        self.get_json(&format!("/v1/resolve/{path}")).await
    }
}
