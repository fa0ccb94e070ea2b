//! Three `msakit-config-server` processes as a Raft cluster on loopback: a leader is elected,
//! any node takes writes (followers hand them to the leader), reads are linearizable or, when
//! asked, stale; and `kill -9` of the leader during a stream of writes loses no acknowledged
//! write while a new leader takes over and the SDK keeps reading.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msakit_raft::testing::{Node, agreed_leader, client, status_when, three_nodes};
use serde_json::Value;

pub(crate) use msakit_raft::testing::cluster_status;

async fn put(client: &reqwest::Client, url: &str, doc: &str, body: String) -> Option<Value> {
    let response = client
        .put(format!("{url}/v1/config/{doc}"))
        .header("content-type", "application/yaml")
        .header("x-msakit-message", body.trim())
        .body(body)
        .send()
        .await
        .ok()?;
    if response.status().is_success() {
        response.json().await.ok()
    } else {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_forward_writes_and_serve_linearizable_and_stale_reads() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(
        Path::new(env!("CARGO_BIN_EXE_msakit-config-server")),
        dir.path(),
    );
    let client = client();
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&client, &all, Duration::from_secs(20)).await;
    let followers: Vec<&Node> = nodes.iter().filter(|n| n.id != leader).collect();

    // A write to a follower is handed to the leader and committed.
    let written = put(
        &client,
        &followers[0].url(),
        "orders/default/main",
        "pool: 7\n".into(),
    )
    .await
    .expect("a follower takes a write");
    assert_eq!(written["version"], 1);

    // A linearizable read (the default) from the other follower sees it at once.
    let resolved: Value = client
        .get(format!(
            "{}/v1/resolve/orders/default/main",
            followers[1].url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resolved["properties"]["pool"], 7);

    // A stale read is served by the follower itself, and says so.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = client
            .get(format!(
                "{}/v1/config/orders/default/main",
                followers[1].url()
            ))
            .header("x-msakit-consistency", "stale")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-msakit-stale"], "true");
        assert!(response.headers().contains_key("x-msakit-staleness-ms"));
        if response.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never applied the write"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Status: one leader, three voters, everyone's applied index reaches the write's.
    let status: Value = client
        .get(format!("{}/v1/cluster", nodes[0].url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["voters"].as_object().unwrap().len(), 3);
    assert_eq!(status["leader"], leader);

    // Where a request is answered is the route's: a follower answers its own cluster status,
    // and hands writes and linearizable reads to the leader. A request marked as already handed
    // on shows which: the follower answers the status, and refuses to hand on the others.
    let follower = followers[0].url();
    let forwarded =
        |request: reqwest::RequestBuilder| request.header(msakit_raft::FORWARDED_BY, "test").send();
    let status = forwarded(client.get(format!("{follower}/v1/cluster")))
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    for request in [
        client
            .put(format!("{follower}/v1/config/orders/default/main"))
            .header("content-type", "application/yaml")
            .body("pool: 8\n"),
        client.get(format!("{follower}/v1/resolve/orders/default/main")),
    ] {
        let refused = forwarded(request).await.unwrap();
        assert_eq!(refused.status(), 503);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_leader");
    }

    // Spring's API on a follower answers too (a read: linearizable through the leader).
    let spring: Value = client
        .get(format!("{}/orders/default", followers[0].url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spring["propertySources"][0]["source"]["pool"], 7);
}

#[derive(Debug, Clone)]
struct Acked {
    doc: String,
    version: u64,
    value: u64,
}

/// The document the writers write, as the SDK reads it.
#[derive(Debug, serde::Deserialize)]
struct Doc {
    value: u64,
}

/// Asserts that `url`'s history of `doc` holds every acknowledged version of it, each with the
/// value it was acknowledged with (written as its message).
async fn assert_history_holds(client: &reqwest::Client, url: &str, doc: &str, acked: &[Acked]) {
    let history: Value = client
        .get(format!("{url}/v1/config/{doc}/history"))
        .header("x-msakit-consistency", "stale")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages: BTreeMap<u64, String> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for a in acked.iter().filter(|a| a.doc == doc) {
        assert_eq!(
            messages.get(&a.version).map(String::as_str),
            Some(format!("value: {}", a.value).as_str()),
            "{url}: {doc} version {}",
            a.version
        );
    }
}

/// Waits until the SDK's live config shows the last value acknowledged for `doc`.
async fn sdk_reaches(sdk: &msakit::ConfigClient<Doc>, doc: &str, acked: &[Acked]) {
    let expected = acked
        .iter()
        .filter(|a| a.doc == doc)
        .map(|a| a.value)
        .max()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while sdk.current().value != expected {
        assert!(
            Instant::now() < deadline,
            "the SDK is at {} instead of {expected}",
            sdk.current().value
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kill -9` of the leader during writes from three writers spread over every node: a new
/// leader is elected, no acknowledged write is lost, every node ends with the same documents,
/// and the SDK (given every node's address) keeps reading and follows the last write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(
        Path::new(env!("CARGO_BIN_EXE_msakit-config-server")),
        dir.path(),
    );
    let client = client();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    let leader = {
        let all: Vec<&Node> = nodes.iter().collect();
        agreed_leader(&client, &all, Duration::from_secs(20)).await
    };
    put(&client, &urls[0], "w0/default/main", "value: 0\n".into())
        .await
        .expect("the first write");

    let sdk_client = msakit::Client::builder()
        .config_urls(urls.clone())
        .build()
        .unwrap();
    let options = msakit::ConfigClientOptions::new("w0", &["default"]);
    let sdk: msakit::ConfigClient<Doc> = sdk_client.config(options).await.unwrap();

    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..3u64 {
        let (client, urls, acked, stop) = (
            client.clone(),
            urls.clone(),
            Arc::clone(&acked),
            Arc::clone(&stop),
        );
        writers.push(tokio::spawn(async move {
            let doc = format!("w{writer}/default/main");
            let mut value = 1;
            let mut turn = writer as usize;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                let url = &urls[turn % urls.len()];
                match put(&client, url, &doc, format!("value: {value}\n")).await {
                    Some(result) => {
                        acked.lock().unwrap().push(Acked {
                            doc: doc.clone(),
                            version: result["version"].as_u64().unwrap(),
                            value,
                        });
                        value += 1;
                    }
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = acked.lock().unwrap().len();
    let leader_index = nodes.iter().position(|n| n.id == leader).unwrap();
    nodes[leader_index].kill();
    let killed = Instant::now();
    let new_leader = {
        let survivors: Vec<&Node> = nodes.iter().filter(|n| n.id != leader).collect();
        agreed_leader(&client, &survivors, Duration::from_secs(20)).await
    };
    let elected_after = killed.elapsed();
    assert_ne!(new_leader, leader);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nodes[leader_index].start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > before_kill + 10,
        "writes went on after the kill: {before_kill} before, {} in all",
        acked.len()
    );

    // Every node, the restarted one included, converges on every acknowledged version.
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for a in &acked {
        let entry = last.entry(a.doc.clone()).or_default();
        *entry = (*entry).max(a.version);
    }
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut missing = 0;
            for (doc, version) in &last {
                let history: Option<Value> = match client
                    .get(format!("{url}/v1/config/{doc}/history"))
                    .header("x-msakit-consistency", "stale")
                    .send()
                    .await
                {
                    Ok(response) if response.status() == 200 => response.json().await.ok(),
                    _ => None,
                };
                let newest = history
                    .as_ref()
                    .and_then(|h| h["versions"][0]["version"].as_u64())
                    .unwrap_or(0);
                if newest < *version {
                    missing += 1;
                }
            }
            if missing == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{url} still lacks acknowledged versions of {missing} documents"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each acknowledged version holds the value it was acknowledged with (its message).
        for doc in last.keys() {
            assert_history_holds(&client, url, doc, &acked).await;
        }
    }

    // The SDK followed writer 0's document across the failover.
    sdk_reaches(&sdk, "w0/default/main", &acked).await;
    println!(
        "{} acknowledged writes ({before_kill} before the kill), none lost; new leader after {:.2} s",
        acked.len(),
        elected_after.as_secs_f64()
    );
}

/// One operation of the recorded history: who, what, when it was invoked and (unless it failed
/// or timed out, leaving its effect unknown) when it returned and with what.
#[derive(Debug, Clone)]
struct Operation {
    client: u64,
    write: Option<u64>,
    invoked: u64,
    returned: Option<(u64, Option<u64>)>,
}

/// Concurrent writes and linearizable reads of one document from four clients spread over the
/// three nodes, across a `kill -9` of the leader and its restart; the history, checked by
/// `stateright`'s linearizability tester against a register, has a linearization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_of_reads_and_writes_across_a_leader_kill_is_linearizable() {
    use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
    use std::sync::atomic::AtomicU64;

    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(
        Path::new(env!("CARGO_BIN_EXE_msakit-config-server")),
        dir.path(),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    let leader = {
        let all: Vec<&Node> = nodes.iter().collect();
        agreed_leader(&client, &all, Duration::from_secs(20)).await
    };
    let doc = "register/default/main";
    put(&client, &urls[0], doc, "value: 0\n".into())
        .await
        .expect("the initial value");

    let clock = Arc::new(AtomicU64::new(0));
    let history = Arc::new(Mutex::new(Vec::<Operation>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for id in 0..4u64 {
        let (client, urls, clock, history, stop) = (
            client.clone(),
            urls.clone(),
            Arc::clone(&clock),
            Arc::clone(&history),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            let mut sequence = 0;
            while !stop.load(Ordering::Relaxed) {
                sequence += 1;
                let url = &urls[fastrand::usize(..urls.len())];
                let write = (fastrand::u8(..) % 2 == 0).then_some(id * 1_000_000 + sequence);
                let invoked = clock.fetch_add(1, Ordering::SeqCst);
                let outcome = match write {
                    Some(value) => put(&client, url, doc, format!("value: {value}\n"))
                        .await
                        .map(|_| None),
                    None => match client.get(format!("{url}/v1/resolve/{doc}")).send().await {
                        Ok(response) if response.status() == 200 => response
                            .json::<Value>()
                            .await
                            .ok()
                            .and_then(|v| v["properties"]["value"].as_u64())
                            .map(Some),
                        _ => None,
                    },
                };
                let returned = outcome.map(|read| (clock.fetch_add(1, Ordering::SeqCst), read));
                if returned.is_none() {
                    // Unknown effect: keep these few (each widens the checker's search).
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if write.is_none() {
                        // A read that failed had no effect: not part of the history.
                        continue;
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                history.lock().unwrap().push(Operation {
                    client: id,
                    write,
                    invoked,
                    returned,
                });
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let leader_index = nodes.iter().position(|n| n.id == leader).unwrap();
    nodes[leader_index].kill();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    nodes[leader_index].start();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for task in clients {
        task.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    // A write whose effect is unknown and whose value nobody read changes nothing a reader
    // saw: leaving it out is sound (it may not have happened) and keeps the search small.
    let read_values: std::collections::BTreeSet<u64> = history
        .iter()
        .filter_map(|o| o.returned.and_then(|(_, read)| read))
        .collect();
    let history: Vec<Operation> = history
        .into_iter()
        .filter(|o| o.returned.is_some() || o.write.is_some_and(|v| read_values.contains(&v)))
        .collect();

    // Replay invocations and returns in the order they happened. A client whose operation
    // failed may or may not have had its effect: it stays in flight for ever, and the client
    // carries on as a new thread.
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, op) in history.iter().enumerate() {
        events.push((op.invoked, true, i));
        if let Some((at, _)) = op.returned {
            events.push((at, false, i));
        }
    }
    events.sort();
    let mut generation: BTreeMap<u64, u64> = BTreeMap::new();
    let mut thread_of = vec![0u64; history.len()];
    let mut tester = LinearizabilityTester::new(Register(0u64));
    for (_, invoke, i) in events {
        let op = &history[i];
        if invoke {
            let generation = generation.entry(op.client).or_default();
            thread_of[i] = op.client * 10_000 + *generation;
            if op.returned.is_none() {
                *generation += 1;
            }
            let register_op = match op.write {
                Some(value) => RegisterOp::Write(value),
                None => RegisterOp::Read,
            };
            tester.on_invoke(thread_of[i], register_op).unwrap();
        } else {
            let ret = match op.returned {
                Some((_, Some(value))) => RegisterRet::ReadOk(value),
                _ => RegisterRet::WriteOk,
            };
            tester.on_return(thread_of[i], ret).unwrap();
        }
    }
    let completed = history.iter().filter(|o| o.returned.is_some()).count();
    let linearizable = tokio::task::spawn_blocking(move || tester.is_consistent())
        .await
        .unwrap();
    println!(
        "{} operations ({completed} completed, {} writes), linearizable: {linearizable}",
        history.len(),
        history.iter().filter(|o| o.write.is_some()).count()
    );
    assert!(completed > 50, "too few operations completed: {completed}");
    // The checker does reject a stale read (a read after a completed write, of the old value).
    let mut stale = LinearizabilityTester::new(Register(0u64));
    stale
        .on_invret(1, RegisterOp::Write(1), RegisterRet::WriteOk)
        .unwrap();
    stale
        .on_invret(2, RegisterOp::Read, RegisterRet::ReadOk(0))
        .unwrap();
    assert!(!stale.is_consistent());
    assert!(
        linearizable,
        "the history has no linearization: {history:?}"
    );
}

/// A rolling restart (SIGTERM, start again, wait until caught up) of all three nodes while two
/// writers write through every node and the SDK reads: no acknowledged write is lost, every write
/// gets through after at most a short outage, and the SDK ends on the last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_writes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(
        Path::new(env!("CARGO_BIN_EXE_msakit-config-server")),
        dir.path(),
    );
    let client = client();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    {
        let all: Vec<&Node> = nodes.iter().collect();
        agreed_leader(&client, &all, Duration::from_secs(20)).await;
    }
    put(&client, &urls[0], "roll0/default/main", "value: 0\n".into())
        .await
        .expect("the first write");
    let sdk_client = msakit::Client::builder()
        .config_urls(urls.clone())
        .build()
        .unwrap();
    let options = msakit::ConfigClientOptions::new("roll0", &["default"]);
    let sdk: msakit::ConfigClient<Doc> = sdk_client.config(options).await.unwrap();

    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let longest_outage = Arc::new(Mutex::new(Duration::ZERO));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..2u64 {
        let (client, urls, acked, outage, stop) = (
            client.clone(),
            urls.clone(),
            Arc::clone(&acked),
            Arc::clone(&longest_outage),
            Arc::clone(&stop),
        );
        writers.push(tokio::spawn(async move {
            let doc = format!("roll{writer}/default/main");
            let mut value = 1;
            let mut turn = writer as usize;
            let mut failing_since: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                let url = &urls[turn % urls.len()];
                match put(&client, url, &doc, format!("value: {value}\n")).await {
                    Some(result) => {
                        if let Some(since) = failing_since.take() {
                            let mut longest = outage.lock().unwrap();
                            *longest = (*longest).max(since.elapsed());
                        }
                        acked.lock().unwrap().push(Acked {
                            doc: doc.clone(),
                            version: result["version"].as_u64().unwrap(),
                            value,
                        });
                        value += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    None => {
                        failing_since.get_or_insert_with(Instant::now);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    for index in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        nodes[index].terminate();
        nodes[index].start();
        // Back and caught up: it knows the leader and has applied what the leader has.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mine = cluster_status(&client, &urls[index]).await;
            let leader = mine.as_ref().and_then(|s| s["leader"].as_u64());
            let caught_up = match (mine, leader) {
                (Some(mine), Some(leader)) => {
                    let theirs = cluster_status(&client, &urls[leader as usize - 1]).await;
                    theirs.is_some_and(|t| {
                        mine["applied_index"].as_u64()
                            >= t["applied_index"].as_u64().map(|i| i.saturating_sub(5))
                    })
                }
                _ => false,
            };
            if caught_up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not catch up",
                index + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    for doc in ["roll0/default/main", "roll1/default/main"] {
        assert_history_holds(&client, &urls[0], doc, &acked).await;
    }
    sdk_reaches(&sdk, "roll0/default/main", &acked).await;
    let longest = *longest_outage.lock().unwrap();
    println!(
        "rolling restart: {} acknowledged writes, none lost; longest write outage {:.2} s",
        acked.len(),
        longest.as_secs_f64()
    );
    assert!(acked.len() > 30, "writes went on: {}", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_after_the_log_was_dropped_catches_up_from_a_snapshot() {
    let binary = Path::new(env!("CARGO_BIN_EXE_msakit-config-server"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "cluster:\n  snapshot_after: 10\n").unwrap();
    let file = file.display().to_string();
    let args = ["--config", file.as_str()];
    let nodes = msakit_raft::testing::three_nodes_with(binary, dir.path(), &args);
    let client = client();
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&client, &all, Duration::from_secs(20)).await;
    let leader_url = nodes[(leader - 1) as usize].url();
    for k in 0..30 {
        put(
            &client,
            &leader_url,
            &format!("app{k}/default/main"),
            format!("k: {k}\n"),
        )
        .await
        .expect("the leader takes writes");
    }
    let purged = |s: &Value| s["purged_index"].as_u64().is_some_and(|i| i > 0);
    status_when(&client, &leader_url, purged, Duration::from_secs(10)).await;

    // A fourth node joins: only a snapshot can bring it up to date.
    let mut joining = Node::joining(binary, dir.path(), 4, &nodes, &args);
    joining.start();
    let added = client
        .post(format!("{leader_url}/v1/cluster/nodes"))
        .json(&serde_json::json!({"node_id": 4, "addr": format!("127.0.0.1:{}", joining.port)}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200, "{}", added.text().await.unwrap());
    // Every document, read from the new node alone.
    for restarted in [false, true] {
        if restarted {
            joining.terminate();
            joining.start();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for k in 0..30 {
            loop {
                let response = client
                    .get(format!("{}/v1/config/app{k}/default/main", joining.url()))
                    .header("x-msakit-consistency", "stale")
                    .send()
                    .await;
                if response.is_ok_and(|r| r.status() == 200) {
                    break;
                }
                assert!(Instant::now() < deadline, "app{k} missing on node 4");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // And it takes writes like any member.
    put(
        &client,
        &joining.url(),
        "app30/default/main",
        "k: 30\n".into(),
    )
    .await
    .expect("the new node takes writes");
}
