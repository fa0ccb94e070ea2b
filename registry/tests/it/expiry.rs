//! Leases expire exactly, and self-preservation holds back a mass eviction.

use serde_json::json;
use std::time::{Duration, Instant};

use crate::support::{SseStream, TestServer, fast_config, wait_until};

#[tokio::test]
async fn an_instance_that_stops_heartbeating_disappears_within_its_ttl() {
    let server = TestServer::start(fast_config()).await;
    let mut watch =
        SseStream::open(&server.client, &server.at("/v1/watch?service=pay"), None).await;
    assert_eq!(watch.expect(Duration::from_secs(5)).await.event, "snapshot");
    let registered = Instant::now();
    server.up("pay", "p1", 9000, 1000).await;
    server.up("pay", "p2", 9001, 600).await;
    // p1 keeps heartbeating; p2 goes silent.
    let keeper = {
        let (client, url) = (
            server.client.clone(),
            server.at("/v1/services/pay/instances/p1/heartbeat"),
        );
        tokio::spawn(async move {
            loop {
                let _ = client.put(&url).send().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut removed = None;
    while removed.is_none() {
        let event = watch.expect(Duration::from_secs(5)).await;
        if event.data["type"] == "removed" {
            removed = Some(event);
        }
    }
    let elapsed = registered.elapsed();
    let removed = removed.unwrap();
    assert_eq!(removed.data["id"], "p2");
    assert_eq!(removed.data["reason"], "expired");
    assert!(
        elapsed >= Duration::from_millis(300),
        "not before the TTL: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(300 + 1000),
        "within TTL + 1 s: {elapsed:?}"
    );
    assert_eq!(server.instance_ids("pay").await, ["p1"]);
    keeper.abort();
    server.stop().await;
}

#[tokio::test]
async fn self_preservation_pauses_a_mass_eviction_and_resumes_when_renewals_recover() {
    let mut config = fast_config();
    config.self_preservation.min_instances = 4;
    config.self_preservation.expiring_share = 0.5;
    config.self_preservation.window = Duration::from_millis(1500);
    let server = TestServer::start(config).await;
    // Leases of 2 s: the keeper below renews every 100 ms, with room for a busy machine.
    for i in 0..8 {
        server.up("svc", &format!("i{i}"), 7000 + i, 2000).await;
    }
    // Nobody heartbeats: all eight lose their lease together — that looks like a network problem.
    wait_until(Duration::from_secs(10), || async {
        server.get_json("/health").await["self_preservation"] == true
    })
    .await;
    let survivors = server.instance_ids("svc").await;
    assert!(
        survivors.len() >= 4,
        "at most half evicted before the pause: {survivors:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.instance_ids("svc").await,
        survivors,
        "eviction stays paused"
    );
    let health = server.get_json("/health").await;
    assert_eq!(health["status"], "SELF_PRESERVATION");
    let metrics = server
        .client
        .get(server.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("registry_self_preservation 1"),
        "{metrics}"
    );

    // Renewals recover for all but one, which really died and is evicted once the share is
    // normal again. The keepers act as real clients do: one evicted in the instant eviction
    // resumed, before its first renewal landed, registers again on the 404.
    let (alive, dead) = survivors.split_at(survivors.len() - 1);
    let keeper = {
        let (client, base) = (
            server.client.clone(),
            server.at("/v1/services/svc/instances"),
        );
        let alive = alive.to_vec();
        tokio::spawn(async move {
            loop {
                for id in &alive {
                    let renewed = client.put(format!("{base}/{id}/heartbeat")).send().await;
                    if renewed.is_ok_and(|r| r.status() == 404) {
                        let port: u16 = 7000 + id[1..].parse::<u16>().unwrap();
                        let body = json!({"host": "127.0.0.1", "port": port, "lease_ttl_ms": 2000});
                        let _ = client.put(format!("{base}/{id}")).json(&body).send().await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    wait_until(Duration::from_secs(15), || async {
        server.instance_ids("svc").await == alive
    })
    .await;
    assert!(!server.instance_ids("svc").await.contains(&dead[0]));
    assert_eq!(server.get_json("/health").await["self_preservation"], false);
    keeper.abort();
    server.stop().await;
}

#[tokio::test]
async fn self_preservation_can_be_turned_off() {
    let mut config = fast_config();
    config.self_preservation.enabled = false;
    config.self_preservation.min_instances = 1;
    let server = TestServer::start(config).await;
    for i in 0..6 {
        server.up("svc", &format!("i{i}"), 7000 + i, 200).await;
    }
    wait_until(Duration::from_secs(5), || async {
        server.instance_ids("svc").await.is_empty()
    })
    .await;
    server.stop().await;
}
