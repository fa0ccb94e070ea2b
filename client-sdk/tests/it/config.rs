//! Typed live configuration: pushes reach the receiver, misfits are refused, the last good copy
//! starts a service when the config server is down.

use std::time::Duration;

use msakit::{Client, ConfigClient, ConfigClientError, ConfigClientOptions};
use serde::Deserialize;

use crate::support::config_server;

#[derive(Debug, Deserialize, PartialEq)]
struct Settings {
    pool: Pool,
    #[serde(default)]
    feature: bool,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Pool {
    size: u32,
}

async fn put(url: &str, doc: &str, yaml: &str) {
    let response = reqwest::Client::new()
        .put(format!("{url}/v1/config/{doc}"))
        .header("content-type", "application/yaml")
        .body(yaml.to_owned())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn typed_config_that_updates_itself_and_falls_back_to_the_last_good_copy() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = config_server(data.path()).await;
    let url = server.url();
    put(&url, "application/default/main", "feature: true\n").await;
    put(&url, "orders/default/main", "pool:\n  size: 4\n").await;

    let client = Client::builder().config_url(url.clone()).build().unwrap();
    let options = ConfigClientOptions::new("orders", &["default"])
        .cache_file(cache.path().join("orders.json"));
    let config: ConfigClient<Settings> = client.config(options.clone()).await.unwrap();
    assert_eq!(
        *config.current(),
        Settings {
            pool: Pool { size: 4 },
            feature: true
        }
    );

    // A change is pushed to the typed receiver.
    let mut changes = config.subscribe();
    put(&url, "orders/default/main", "pool:\n  size: 8\n").await;
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            changes.changed().await.unwrap();
            if changes.borrow().pool.size == 8 {
                break;
            }
        }
    })
    .await
    .unwrap();

    // A change that does not fit the type is refused; the previous value stays.
    put(&url, "orders/default/main", "pool:\n  size: lots\n").await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while config.rejected_changes() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(config.current().pool.size, 8);

    // The config server goes away: a new service instance starts with the last good copy.
    server.stop().await;
    let restarted: ConfigClient<Settings> = client.config(options).await.unwrap();
    assert_eq!(restarted.current().pool.size, 8);

    // Without a cache, starting without a server fails clearly.
    let bare = ConfigClientOptions::new("orders", &["default"]);
    assert!(client.config::<Settings>(bare.clone()).await.is_err());
    // And a client that names no config server says so.
    let nowhere = Client::builder().build().unwrap();
    assert!(matches!(
        nowhere.config::<Settings>(bare).await,
        Err(ConfigClientError::NoServer)
    ));
}
