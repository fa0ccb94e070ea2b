//! A cluster in the middle of a rolling upgrade: node 1 stands for a newer build that writes
//! fields this build does not know into every command it commits (a proxy in front of each node
//! adds them to the Raft entries node 1 sends), and the two nodes of this build apply them all
//! the same way: every kind of command, and the same state on every node afterwards. And the
//! other way round: with a node of an older build, a leader writes no batch of commands, which
//! that node could not read.

use std::path::Path;
use std::time::{Duration, Instant};

use msakit_raft::testing::{
    BuildProxy, Node, client, free_port, leader_made, three_nodes_advertising,
};
use serde_json::{Value, json};

use crate::cluster::{ARGS, BINARY, ONE_CLUSTER, every_node_lists};

/// The node that stands for the newer build.
const NEWER: u64 = 1;

/// What every node lists of `service`: each instance without what only that node knows (its
/// own leases' progress).
async fn listing(client: &reqwest::Client, url: &str, service: &str) -> Option<Value> {
    let response = client
        .get(format!("{url}/v1/services/{service}"))
        .send()
        .await
        .ok()?;
    let mut body: Value = response.json().await.ok()?;
    for instance in body["instances"].as_array_mut()? {
        instance.as_object_mut()?.remove("last_renewed_at_ms");
    }
    Some(body)
}

/// Waits until every node lists `service` identically and `holds` for it; that listing.
async fn every_node_agrees(
    client: &reqwest::Client,
    urls: &[String],
    service: &str,
    holds: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = Vec::new();
        for url in urls {
            seen.push(listing(client, url, service).await);
        }
        if let Some(Some(first)) = seen.first() {
            if holds(first) && seen.iter().all(|s| s.as_ref() == Some(first)) {
                return first.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never agreed on {service}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_this_build_apply_what_a_newer_leader_writes() {
    let _one = ONE_CLUSTER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let listen: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut proxies = Vec::new();
    for port in &listen {
        proxies.push(BuildProxy::newer(*port, NEWER, &["metadata", "entries"]).await);
    }
    let advertised: Vec<u16> = proxies.iter().map(|p| p.port).collect();
    let mut nodes =
        three_nodes_advertising(Path::new(BINARY), dir.path(), ARGS, &listen, &advertised);
    let client = client();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    leader_made(&client, &mut nodes, NEWER).await;
    let leader = &urls[(NEWER - 1) as usize];

    // Every kind of command, committed by the newer leader: a native registration with a
    // health check (which fails: nothing listens on its port, so the leader's checker commits
    // a verdict), a Eureka registration, an override, metadata, a deregistration, and a
    // registration left to expire (an eviction).
    let closed = free_port();
    let native = client
        .put(format!("{leader}/v1/services/orders/instances/checked"))
        .json(&json!({
            "host": "127.0.0.1", "port": closed, "zone": "zone-a", "weight": 7,
            "metadata": {"version": "2"}, "lease_ttl_ms": 120_000,
            "health_check": {"type": "tcp", "interval_ms": 1000, "timeout_ms": 200,
                "failures_before_down": 1, "successes_before_up": 1}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(native.status(), 200, "{}", native.text().await.unwrap());
    let eureka = client
        .post(format!("{leader}/eureka/apps/ORDERS"))
        .json(&json!({"instance": {
            "instanceId": "eureka", "hostName": "127.0.0.1", "app": "ORDERS",
            "ipAddr": "127.0.0.1", "status": "UP", "port": {"$": 9002, "@enabled": "true"},
            "leaseInfo": {"durationInSecs": 120}, "metadata": {"zone": "zone-b"},
            "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(eureka.status(), 204, "{}", eureka.text().await.unwrap());
    for (id, ttl) in [("left", 120_000), ("expiring", 3_000)] {
        let response = client
            .put(format!("{leader}/v1/services/orders/instances/{id}"))
            .json(&json!({"host": "127.0.0.1", "port": 9100, "lease_ttl_ms": ttl}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let status = client
        .put(format!(
            "{leader}/eureka/apps/ORDERS/eureka/status?value=OUT_OF_SERVICE"
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let status = client
        .put(format!(
            "{leader}/eureka/apps/ORDERS/checked/metadata?region=eu"
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let status = client
        .delete(format!("{leader}/v1/services/orders/instances/left"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");

    // Every node ends with the same instances, statuses, metadata and indexes.
    let agreed = every_node_agrees(&client, &urls, "orders", |listing| {
        let instances = listing["instances"].as_array().unwrap();
        let status_of = |id: &str| {
            instances
                .iter()
                .find(|i| i["id"] == id)
                .map(|i| i["status"].clone())
        };
        instances.len() == 2
            && status_of("checked") == Some(json!("DOWN"))
            && status_of("eureka") == Some(json!("OUT_OF_SERVICE"))
    })
    .await;
    let checked = agreed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "checked")
        .unwrap();
    assert_eq!(checked["metadata"], json!({"version": "2", "region": "eu"}));
    assert_eq!(checked["check_passing"], false);
    assert_eq!(checked["zone"], "zone-a");
    every_node_lists(
        &client,
        &urls,
        "orders",
        &["checked", "eureka"],
        Duration::from_secs(5),
    )
    .await;
    // What only Eureka's API holds came through too.
    for url in &urls {
        let app: Value = client
            .get(format!("{url}/eureka/apps/ORDERS/eureka"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(app["instance"]["dataCenterInfo"]["name"], "MyOwn", "{url}");
        assert_eq!(
            app["instance"]["overriddenStatus"], "OUT_OF_SERVICE",
            "{url}"
        );
    }

    // Every command the followers applied carried the newer build's fields.
    let mut rewritten = std::collections::BTreeMap::new();
    for proxy in &proxies {
        for (kind, n) in proxy.rewritten() {
            *rewritten.entry(kind).or_insert(0) += n;
        }
    }
    for kind in [
        "Register",
        "CheckVerdict",
        "Override",
        "MergeMetadata",
        "Deregister",
        "Evict",
    ] {
        assert!(
            rewritten.get(kind).is_some_and(|n| *n >= 2),
            "no {kind} from the newer leader reached both followers: {rewritten:?}"
        );
    }
}

/// Registers `count` instances of `service` at once, from `first` on, through `url`; each must
/// be acknowledged.
async fn register_at_once(
    client: &reqwest::Client,
    url: &str,
    service: &str,
    first: usize,
    count: usize,
) {
    let registrations = (first..first + count).map(|i| {
        let client = client.clone();
        let url = format!("{url}/v1/services/{service}/instances/i{i}");
        async move {
            let response = client
                .put(url)
                .json(&json!({"host": "127.0.0.1", "port": 9000, "lease_ttl_ms": 120_000}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        }
    });
    futures_util::future::join_all(registrations).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_share_entries_only_once_every_node_reads_batches() {
    let _one = ONE_CLUSTER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let listen: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // Node 3 is of an older build: it never says it reads batches.
    let proxies = [
        BuildProxy::same(listen[0]).await,
        BuildProxy::same(listen[1]).await,
        BuildProxy::older(listen[2]).await,
    ];
    let advertised: Vec<u16> = proxies.iter().map(|p| p.port).collect();
    let mut nodes =
        three_nodes_advertising(Path::new(BINARY), dir.path(), ARGS, &listen, &advertised);
    let client = client();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    leader_made(&client, &mut nodes, 1).await;
    let leader = &urls[0];

    // Bursts of registrations at once: every one its own entry, everywhere.
    let mut registered = 0;
    for _ in 0..4 {
        register_at_once(&client, leader, "burst", registered, 32).await;
        registered += 32;
    }
    every_node_lists_all(&client, &urls, registered).await;
    let batches: Vec<usize> = proxies.iter().map(BuildProxy::batches).collect();
    assert_eq!(batches, [0, 0, 0], "no batch while a node cannot read them");

    // Node 3 upgraded: the leader hears it and batches what arrives together.
    proxies[2].upgrade();
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxies.iter().map(BuildProxy::batches).sum::<usize>() == 0 {
        assert!(
            Instant::now() < deadline,
            "bursts of registrations were never batched once every node read batches"
        );
        register_at_once(&client, leader, "burst", registered, 32).await;
        registered += 32;
    }
    // Each registration applied once, on every node, batched or not.
    every_node_lists_all(&client, &urls, registered).await;
}

/// Waits until every node lists the `registered` instances of `burst`, and nothing else.
async fn every_node_lists_all(client: &reqwest::Client, urls: &[String], registered: usize) {
    let mut expected: Vec<String> = (0..registered).map(|i| format!("i{i}")).collect();
    expected.sort();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    every_node_lists(client, urls, "burst", &expected, Duration::from_secs(20)).await;
}
