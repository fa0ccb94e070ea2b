//! `msakit-demo --ha`: three registry nodes and three config-server nodes, each its own process
//! with its own data directory, as two Raft clusters — and what the scenario asks of them:
//! which node leads, killing it, and bringing it back.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cluster::Cluster;

/// One server node: its process name, URL and the arguments that start it again.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) url: String,
    args: Vec<String>,
}

/// The two clusters.
#[derive(Debug, Clone)]
pub(crate) struct Servers {
    pub(crate) registry: Vec<Node>,
    pub(crate) config: Vec<Node>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Three nodes of `kind` (`registry` or `config-server`), started under `cluster`.
async fn start_three(
    cluster: &mut Cluster,
    kind: &str,
    short: &str,
    path: &dyn Fn(&str) -> String,
) -> anyhow::Result<Vec<Node>> {
    let ports = [free_port()?, free_port()?, free_port()?];
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let name = format!("{short}-{}", i + 1);
        let args: Vec<String> = [
            kind,
            "--port",
            &port.to_string(),
            "--data-dir",
            &path(&format!("{name}-data")),
            "--node-id",
            &(i + 1).to_string(),
            "--peers",
            &peers,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        cluster.start(&name, &args).await?;
        nodes.push(Node {
            url: format!("http://127.0.0.1:{port}"),
            name,
            args,
        });
    }
    Ok(nodes)
}

impl Servers {
    /// Starts both clusters and waits until each has a leader.
    pub(crate) async fn start(
        cluster: &mut Cluster,
        http: &reqwest::Client,
        path: &dyn Fn(&str) -> String,
    ) -> anyhow::Result<Self> {
        let servers = Self {
            registry: start_three(cluster, "registry", "registry", path).await?,
            config: start_three(cluster, "config-server", "config", path).await?,
        };
        for nodes in [&servers.registry, &servers.config] {
            leader(http, nodes, Duration::from_secs(20))
                .await
                .context("no leader elected")?;
        }
        Ok(servers)
    }

    /// Every registry URL, comma-separated (what services are given).
    pub(crate) fn registry_urls(&self) -> String {
        join(&self.registry)
    }

    /// Every config-server URL, comma-separated.
    pub(crate) fn config_urls(&self) -> String {
        join(&self.config)
    }
}

fn join(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| n.url.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `/health`'s cluster part of `url`, if it answers.
async fn status(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let health: serde_json::Value = http
        .get(format!("{url}/health"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(health["cluster"].clone())
}

/// Waits until the nodes of `nodes` that answer agree on a leader among them; its index in
/// `nodes`.
pub(crate) async fn leader(
    http: &reqwest::Client,
    nodes: &[Node],
    within: Duration,
) -> Option<usize> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut seen = Vec::new();
        for node in nodes {
            if let Some(status) = status(http, &node.url).await {
                seen.push(status["leader"].as_u64());
            }
        }
        if let Some(Some(leader)) = seen.first().copied() {
            let index = nodes
                .iter()
                .position(|n| n.name.ends_with(&format!("-{leader}")));
            if seen.iter().all(|l| *l == Some(leader)) && index.is_some() {
                return index;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Restarts `node` and waits until it has applied what the cluster's leader had applied when
/// it came back; how long that took.
pub(crate) async fn rejoin(
    cluster: &mut Cluster,
    http: &reqwest::Client,
    node: &Node,
    others: &[Node],
    within: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    cluster.start(&node.name, &node.args).await?;
    let mut target = None;
    for other in others {
        if let Some(status) = status(http, &other.url).await
            && status["role"] == "Leader"
        {
            target = status["applied_index"].as_u64();
        }
    }
    let target = target.context("no leader among the other nodes")?;
    while started.elapsed() < within {
        if let Some(status) = status(http, &node.url).await
            && status["applied_index"].as_u64() >= Some(target)
        {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{} did not catch up within {within:?}", node.name)
}
