//! Three `msakit-registry` processes as a Raft cluster on loopback: registrations through any
//! node (native and Eureka) reach every node; heartbeats sent only to followers keep leases
//! alive on the leader, which alone evicts; `kill -9` of the leader evicts no live instance (the
//! new leader grants a lease of grace), and a restarted node catches up; a rolling restart of all
//! three under the SDK's registrations loses none.

use std::path::Path;
use std::time::{Duration, Instant};

use msakit::{Client, RegistrationOptions};
use msakit_raft::testing::{
    Node, agreed_leader, client, cluster_status, status_when, three_nodes_with,
};
use serde_json::{Value, json};

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_msakit-registry");

/// One three-process cluster at a time: on two cores, several at once starve the other tests
/// of this binary (whose leases are short).
pub(crate) static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Short leases so that expiry shows within the test.
pub(crate) const ARGS: &[&str] = &["--default-ttl", "3s"];

fn nodes(dir: &Path) -> Vec<Node> {
    three_nodes_with(Path::new(BINARY), dir, ARGS)
}

/// The instance ids of `service` as `url` lists them, if it answers.
pub(crate) async fn ids(client: &reqwest::Client, url: &str, service: &str) -> Option<Vec<String>> {
    let body: Value = client
        .get(format!("{url}/v1/services/{service}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut ids: Vec<String> = body["instances"]
        .as_array()?
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    Some(ids)
}

/// A node's `/eureka/apps/delta` as JSON.
async fn json_delta(client: &reqwest::Client, url: &str) -> Value {
    let response = client
        .get(format!("{url}/eureka/apps/delta"))
        .header("accept", "application/json")
        .send()
        .await;
    response.unwrap().json().await.unwrap()
}

/// Waits until every node in `urls` lists exactly `expected` for `service`.
pub(crate) async fn every_node_lists(
    client: &reqwest::Client,
    urls: &[String],
    service: &str,
    expected: &[&str],
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let mut seen = Vec::new();
        for url in urls {
            seen.push(ids(client, url, service).await);
        }
        if seen
            .iter()
            .all(|s| s.as_deref().is_some_and(|s| s == expected))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes never all listed {expected:?} for {service}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn register(client: &reqwest::Client, url: &str, id: &str, port: u16) -> reqwest::StatusCode {
    client
        .put(format!("{url}/v1/services/orders/instances/{id}"))
        .json(&json!({"host": "127.0.0.1", "port": port, "lease_ttl_ms": 3000}))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(reqwest::StatusCode::BAD_GATEWAY)
}

/// Heartbeats `id` at `url` every second until `until`; how many were refused.
async fn heartbeat_until(client: &reqwest::Client, url: &str, path: &str, until: Instant) -> usize {
    let mut refused = 0;
    while Instant::now() < until {
        let ok = client
            .put(format!("{url}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        refused += usize::from(!ok);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_replicate_heartbeats_reach_the_leader_and_a_leader_kill_evicts_no_one() {
    let _one = ONE_CLUSTER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = nodes(dir.path());
    let client = client();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&client, &all, Duration::from_secs(20)).await;
    let leader_index = (leader - 1) as usize;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader_index).collect();
    let (f0, f1) = (urls[followers[0]].clone(), urls[followers[1]].clone());

    // A native registration through one follower, a Eureka one through the other: both are
    // handed to the leader, committed, and listed by every node.
    assert_eq!(register(&client, &f0, "a", 9001).await, 200);
    let eureka = client
        .post(format!("{f1}/eureka/apps/ORDERS"))
        .json(&json!({"instance": {
            "instanceId": "b", "hostName": "127.0.0.1", "app": "ORDERS",
            "ipAddr": "127.0.0.1", "status": "UP",
            "port": {"$": 9002, "@enabled": "true"},
            "leaseInfo": {"durationInSecs": 3},
            "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(eureka.status(), 204, "{}", eureka.text().await.unwrap());
    // `c` registers and never heartbeats: the leader evicts it, every node hears so.
    assert_eq!(register(&client, &f0, "c", 9003).await, 200);
    every_node_lists(
        &client,
        &urls,
        "orders",
        &["a", "b", "c"],
        Duration::from_secs(5),
    )
    .await;

    // A follower answers reads itself, flagged stale; bad input is refused before the log.
    let read = client
        .get(format!("{f0}/v1/services/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.headers()["x-msakit-stale"], "true");
    let bad = client
        .put(format!("{f0}/v1/services/orders/instances/bad%20id"))
        .json(&json!({"host": "127.0.0.1", "port": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);

    // Where a request is answered is the route's: a follower renews heartbeats itself (native
    // and Eureka), and hands registrations to the leader. A request marked as already handed on
    // shows which: the follower answers the heartbeats, and refuses to hand on the write again.
    let forwarded =
        |request: reqwest::RequestBuilder| request.header(msakit_raft::FORWARDED_BY, "test").send();
    let heartbeat = forwarded(client.put(format!("{f0}/v1/services/orders/instances/a/heartbeat")))
        .await
        .unwrap();
    assert_eq!(heartbeat.status(), 200);
    let eureka_heartbeat = forwarded(client.put(format!("{f1}/eureka/apps/ORDERS/b")))
        .await
        .unwrap();
    assert_eq!(eureka_heartbeat.status(), 200);
    let write = forwarded(
        client
            .put(format!("{f0}/v1/services/orders/instances/d"))
            .json(&json!({"host": "127.0.0.1", "port": 9004})),
    )
    .await
    .unwrap();
    assert_eq!(write.status(), 503, "a follower never writes itself");
    let body: Value = write.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_leader");

    // Heartbeats go only to the followers, for three leases: the leader keeps `a` and `b`
    // (renewals handed on in batches) and evicts `c` everywhere.
    let until = Instant::now() + Duration::from_secs(9);
    let (refused_a, refused_b) = tokio::join!(
        heartbeat_until(
            &client,
            &f0,
            "/v1/services/orders/instances/a/heartbeat",
            until
        ),
        heartbeat_until(&client, &f1, "/eureka/apps/ORDERS/b", until),
    );
    assert_eq!((refused_a, refused_b), (0, 0));
    every_node_lists(
        &client,
        &urls,
        "orders",
        &["a", "b"],
        Duration::from_secs(5),
    )
    .await;
    // Every node's Eureka delta describes the evicted `c` as it was (issue 18: it was a stub
    // with the id for a host name and port 0, which clients matching by host and port keep).
    for url in &urls {
        let delta = json_delta(&client, url).await;
        let gone: Vec<&Value> = delta["applications"]["application"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|app| app["instance"].as_array().unwrap())
            .filter(|i| i["instanceId"] == "c")
            .collect();
        assert_eq!(gone.len(), 1, "{url}: {delta}");
        assert_eq!(gone[0]["actionType"], "DELETED", "{url}");
        assert_eq!(gone[0]["hostName"], "127.0.0.1", "{url}");
        assert_eq!(gone[0]["port"]["$"], 9003, "{url}");
    }
    // The leader, idle of writes for seconds but acknowledged by the followers, is current.
    let read = client
        .get(format!("{}/v1/services/orders", urls[leader_index]))
        .send()
        .await
        .unwrap();
    assert!(!read.headers().contains_key("x-msakit-stale"), "{read:?}");
    // Prometheus sees the roles too.
    for (url, leads) in urls.iter().enumerate().map(|(i, u)| (u, i == leader_index)) {
        let text = client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let expected = format!("msakit_cluster_is_leader {}", u8::from(leads));
        assert!(text.contains(&expected), "{url}: {text}");
        assert!(text.contains("msakit_cluster_has_leader 1"), "{text}");
    }

    // Kill the leader while heartbeats go on to the survivors: a new leader, and nobody
    // evicted — not even across the time the new leader had not seen renewals for.
    nodes[leader_index].kill();
    let killed_at = Instant::now();
    let heartbeats = {
        let (client, f0, f1) = (client.clone(), f0.clone(), f1.clone());
        let until = Instant::now() + Duration::from_secs(12);
        tokio::spawn(async move {
            tokio::join!(
                heartbeat_until(
                    &client,
                    &f0,
                    "/v1/services/orders/instances/a/heartbeat",
                    until
                ),
                heartbeat_until(&client, &f1, "/eureka/apps/ORDERS/b", until),
            )
        })
    };
    let survivors: Vec<&Node> = nodes.iter().filter(|n| n.id != leader).collect();
    let new_leader = agreed_leader(&client, &survivors, Duration::from_secs(20)).await;
    assert_ne!(new_leader, leader);
    println!(
        "registry leader {leader} killed: node {new_leader} leads after {:.2} s",
        killed_at.elapsed().as_secs_f64()
    );
    // Writes go on through the new leader.
    assert_eq!(register(&client, &f1, "d", 9004).await, 200);
    assert_eq!(
        heartbeats.await.unwrap(),
        (0, 0),
        "heartbeats refused across the failover"
    );
    let survivor_urls = vec![f0.clone(), f1.clone()];
    // `d` never heartbeats: gone; `a` and `b` stayed all along.
    every_node_lists(
        &client,
        &survivor_urls,
        "orders",
        &["a", "b"],
        Duration::from_secs(8),
    )
    .await;

    // The killed node comes back and catches up with everything committed without it.
    nodes[leader_index].start();
    assert_eq!(register(&client, &f0, "e", 9005).await, 200);
    every_node_lists(
        &client,
        &urls,
        "orders",
        &["a", "b", "e"],
        Duration::from_secs(20),
    )
    .await;
    // Same registry index everywhere once caught up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut indexes = Vec::new();
        for url in &urls {
            let health: Value = client
                .get(format!("{url}/health"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            indexes.push(health["index"].as_u64());
        }
        if indexes.iter().all(|i| *i == indexes[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "indexes differ: {indexes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = cluster_status(&client, &urls[leader_index]).await.unwrap();
    assert_eq!(status["voters"].as_object().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_sdk_registrations_loses_none() {
    let _one = ONE_CLUSTER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = nodes(dir.path());
    let client = client();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    let all: Vec<&Node> = nodes.iter().collect();
    agreed_leader(&client, &all, Duration::from_secs(20)).await;

    // Ten instances register through the SDK, each given the three addresses (starting at a
    // different one), and heartbeat every second.
    let mut registrations = Vec::new();
    for k in 0..10 {
        let sdk = Client::builder()
            .registry_urls((0..3).map(|i| urls[(k + i) % 3].clone()))
            .build()
            .unwrap();
        let options =
            RegistrationOptions::new("payments", &format!("p{k}"), "127.0.0.1", 10_000 + k as u16)
                .lease(Duration::from_secs(3));
        registrations.push(sdk.registration(options).unwrap());
    }
    let expected: Vec<String> = (0..10).map(|k| format!("p{k}")).collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let mut sorted = expected.clone();
    sorted.sort();
    every_node_lists(&client, &urls, "payments", &sorted, Duration::from_secs(15)).await;

    // A discovering client with the three addresses.
    let sdk = Client::builder()
        .registry_urls(urls.clone())
        .build()
        .unwrap();
    let discovery = sdk.discovery().unwrap();
    assert_eq!(discovery.instances("payments").await.unwrap().len(), 10);

    // Restart each node in turn (SIGTERM, start, wait until it is back in the cluster); the
    // registrations and lookups carry on, and none is lost at any point.
    for index in 0..3 {
        nodes[index].terminate();
        let others: Vec<String> = (0..3)
            .filter(|i| *i != index)
            .map(|i| urls[i].clone())
            .collect();
        for _ in 0..3 {
            let listed = ids(&client, &others[0], "payments").await;
            assert!(
                listed.as_ref().is_none_or(|l| l.len() == 10),
                "lost registrations while node {} was down: {listed:?}",
                index + 1
            );
            assert_eq!(discovery.instances("payments").await.unwrap().len(), 10);
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        nodes[index].start();
        let all: Vec<&Node> = nodes.iter().collect();
        agreed_leader(&client, &all, Duration::from_secs(20)).await;
        every_node_lists(&client, &urls, "payments", &sorted, Duration::from_secs(15)).await;
    }
    // Two more leases: still all there (renewals reach whichever node leads now).
    tokio::time::sleep(Duration::from_secs(6)).await;
    every_node_lists(&client, &urls, "payments", &sorted, Duration::from_secs(5)).await;
    for registration in registrations {
        registration.shutdown().await;
    }
    every_node_lists(&client, &urls, "payments", &[], Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_after_the_log_was_dropped_catches_up_from_a_snapshot() {
    let _one = ONE_CLUSTER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registry.yaml");
    std::fs::write(&file, "cluster:\n  snapshot_after: 10\n").unwrap();
    let file = file.display().to_string();
    let args = ["--config", file.as_str()];
    let nodes = three_nodes_with(Path::new(BINARY), dir.path(), &args);
    let client = client();
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&client, &all, Duration::from_secs(20)).await;
    let leader_url = nodes[(leader - 1) as usize].url();
    for k in 0..40 {
        let status = client
            .put(format!("{leader_url}/v1/services/stock/instances/s{k}"))
            .json(&json!({"host": "127.0.0.1", "port": 7000 + k, "lease_ttl_ms": 120_000}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    // The leader snapshotted and dropped the log before its snapshot.
    let purged = |s: &Value| s["purged_index"].as_u64().is_some_and(|i| i > 0);
    status_when(&client, &leader_url, purged, Duration::from_secs(10)).await;

    // A fourth node joins through the admin API: it can only catch up from a snapshot.
    let mut joining = Node::joining(Path::new(BINARY), dir.path(), 4, &nodes, &args);
    joining.start();
    let added = client
        .post(format!("{leader_url}/v1/cluster/nodes"))
        .json(&json!({"node_id": 4, "addr": format!("127.0.0.1:{}", joining.port)}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200, "{}", added.text().await.unwrap());
    let stock: Vec<String> = (0..40).map(|k| format!("s{k}")).collect();
    let mut stock: Vec<&str> = stock.iter().map(String::as_str).collect();
    stock.sort();
    every_node_lists(
        &client,
        &[joining.url()],
        "stock",
        &stock,
        Duration::from_secs(20),
    )
    .await;
    let voter = |s: &Value| s["voters"].as_object().is_some_and(|v| v.len() == 4);
    let status = status_when(&client, &joining.url(), voter, Duration::from_secs(10)).await;
    assert!(status["snapshot_index"].as_u64().is_some(), "{status}");
    // Its change history starts at the snapshot: its Eureka delta cannot bring a client up to
    // date, and says so with a hash code no client computes (each then fetches in full).
    let delta = json_delta(&client, &joining.url()).await;
    assert_eq!(
        delta["applications"]["apps__hashcode"], "INCOMPLETE_0_",
        "{delta}"
    );

    // Restarted, it starts from the snapshot it kept and the log after it.
    joining.terminate();
    joining.start();
    every_node_lists(
        &client,
        &[joining.url()],
        "stock",
        &stock,
        Duration::from_secs(20),
    )
    .await;
    // And it takes writes like any member.
    let status = client
        .put(format!("{}/v1/services/stock/instances/s40", joining.url()))
        .json(&json!({"host": "127.0.0.1", "port": 7040, "lease_ttl_ms": 120_000}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let mut urls: Vec<String> = nodes.iter().map(Node::url).collect();
    urls.push(joining.url());
    stock.push("s40");
    stock.sort();
    every_node_lists(&client, &urls, "stock", &stock, Duration::from_secs(10)).await;
}

/// Nodes over HTTPS with client certificates required: they talk to each other over TLS too
/// (trusting `cluster.ca`, presenting their own certificate), forward writes and hand on
/// renewals; a client without a certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_tls_to_each_other_when_the_servers_serve_tls() {
    let _one = ONE_CLUSTER.lock().await;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, contents: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let node = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let ca_pem = write("ca.pem", ca.pem());
    let node_pem = write("node.pem", node.pem());
    let node_key = write("node.key", key.serialize_pem());
    let config = write("registry.yaml", format!("cluster:\n  ca: {ca_pem}\n"));
    let args = [
        "--config",
        &config,
        "--tls-cert",
        &node_pem,
        "--tls-key",
        &node_key,
        "--tls-client-ca",
        &ca_pem,
        "--default-ttl",
        "3s",
    ];
    let nodes = three_nodes_with(Path::new(BINARY), dir.path(), &args);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .identity(
            reqwest::Identity::from_pem(
                format!("{}{}", node.pem(), key.serialize_pem()).as_bytes(),
            )
            .unwrap(),
        )
        .timeout(Duration::from_secs(8))
        .build()
        .unwrap();
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&client, &all, Duration::from_secs(20)).await;
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    assert!(urls[0].starts_with("https://"));
    let follower = nodes.iter().find(|n| n.id != leader).unwrap().url();
    assert_eq!(register(&client, &follower, "a", 9001).await, 200);
    every_node_lists(&client, &urls, "orders", &["a"], Duration::from_secs(5)).await;
    // Heartbeats to the follower only, for two leases: renewals reach the leader over TLS.
    let until = Instant::now() + Duration::from_secs(6);
    let path = "/v1/services/orders/instances/a/heartbeat";
    assert_eq!(heartbeat_until(&client, &follower, path, until).await, 0);
    every_node_lists(&client, &urls, "orders", &["a"], Duration::from_secs(5)).await;
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let refused = anonymous.get(format!("{follower}/health")).send().await;
    assert!(refused.is_err(), "{refused:?}");
}
