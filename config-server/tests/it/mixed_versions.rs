//! A cluster in the middle of a rolling upgrade: node 1 stands for a newer build that writes
//! fields this build does not know into every command it commits (a proxy in front of each node
//! adds them to the Raft entries node 1 sends), and the two nodes of this build apply them all
//! the same way: every kind of command, and the same history, files and audit on every node.

use std::path::Path;
use std::time::{Duration, Instant};

use msakit_raft::testing::{
    BuildProxy, Node, client, free_port, leader_made, three_nodes_advertising,
};
use serde_json::{Value, json};

/// The node that stands for the newer build.
const NEWER: u64 = 1;

const DOC: &str = "orders/prod/main";

/// What a node holds, read from it alone (a stale read): the document's history, the file,
/// and the audit log.
async fn held(client: &reqwest::Client, url: &str) -> Option<Value> {
    let get = |path: String| {
        client
            .get(format!("{url}{path}"))
            .header("x-msakit-consistency", "stale")
            .send()
    };
    let history: Value = get(format!("/v1/config/{DOC}/history"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let file = get(format!("/{DOC}/nginx/nginx.conf")).await.ok()?;
    let file = (file.status().as_u16(), file.text().await.ok()?);
    let gone = get(format!("/{DOC}/old.conf"))
        .await
        .ok()?
        .status()
        .as_u16();
    let audit: Value = get("/v1/audit".into()).await.ok()?.json().await.ok()?;
    Some(json!({"history": history, "file": file, "gone": gone, "audit": audit}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_this_build_apply_what_a_newer_leader_writes() {
    let dir = tempfile::tempdir().unwrap();
    let listen: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut proxies = Vec::new();
    for port in &listen {
        proxies.push(BuildProxy::newer(*port, NEWER, &[]).await);
    }
    let advertised: Vec<u16> = proxies.iter().map(|p| p.port).collect();
    let binary = Path::new(env!("CARGO_BIN_EXE_msakit-config-server"));
    let mut nodes = three_nodes_advertising(binary, dir.path(), &[], &listen, &advertised);
    let client = client();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    leader_made(&client, &mut nodes, NEWER).await;
    let leader = &urls[(NEWER - 1) as usize];

    // Every kind of command, committed by the newer leader: a schema, versions (a write, a
    // compare-and-set write, a rollback, a deletion), a file stored and one removed.
    let ok = |response: reqwest::Response| async move {
        let status = response.status();
        assert!(
            status.is_success(),
            "{status}: {}",
            response.text().await.unwrap()
        );
    };
    ok(client
        .put(format!("{leader}/v1/schemas/orders"))
        .json(&json!({"type": "object", "properties": {"pool": {"type": "integer"}}}))
        .send()
        .await
        .unwrap())
    .await;
    for (body, if_match) in [("pool: 8\n", None), ("pool: 16\n", Some("1"))] {
        let mut put = client
            .put(format!("{leader}/v1/config/{DOC}"))
            .header("content-type", "application/yaml")
            .body(body);
        if let Some(version) = if_match {
            put = put.header("if-match", version);
        }
        ok(put.send().await.unwrap()).await;
    }
    ok(client
        .post(format!("{leader}/v1/config/{DOC}/rollback"))
        .json(&json!({"version": 1}))
        .send()
        .await
        .unwrap())
    .await;
    for path in ["nginx/nginx.conf", "old.conf"] {
        ok(client
            .put(format!("{leader}/v1/files/{DOC}/{path}"))
            .body("worker_processes 2;\n")
            .send()
            .await
            .unwrap())
        .await;
    }
    ok(client
        .delete(format!("{leader}/v1/files/{DOC}/old.conf"))
        .send()
        .await
        .unwrap())
    .await;
    ok(client
        .delete(format!("{leader}/v1/config/{DOC}"))
        .send()
        .await
        .unwrap())
    .await;

    // Every node holds the same: four versions (the last a deletion), the file, the audit.
    let deadline = Instant::now() + Duration::from_secs(20);
    let agreed = loop {
        let mut seen = Vec::new();
        for url in &urls {
            seen.push(held(&client, url).await);
        }
        if let Some(Some(first)) = seen.first() {
            let complete = first["history"]["versions"]
                .as_array()
                .is_some_and(|h| h.len() == 4);
            if complete && seen.iter().all(|s| s.as_ref() == Some(first)) {
                break first.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never agreed: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let history = agreed["history"]["versions"].as_array().unwrap();
    assert_eq!(history[0]["deleted"], true, "{agreed}");
    assert_eq!(history[1]["rolled_back_to"], 1, "{agreed}");
    assert_eq!(agreed["file"], json!([200, "worker_processes 2;\n"]));
    assert_eq!(agreed["gone"], 404);
    let actions: Vec<&str> = agreed["audit"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "schema",
            "write",
            "write",
            "rollback",
            "file",
            "file",
            "file_delete",
            "delete"
        ]
    );

    // Every command the followers applied carried the newer build's fields.
    let mut rewritten = std::collections::BTreeMap::new();
    for proxy in &proxies {
        for (kind, n) in proxy.rewritten() {
            *rewritten.entry(kind).or_insert(0) += n;
        }
    }
    for kind in ["Schema", "Versions", "File"] {
        assert!(
            rewritten.get(kind).is_some_and(|n| *n >= 2),
            "no {kind} from the newer leader reached both followers: {rewritten:?}"
        );
    }
}
