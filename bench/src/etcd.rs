//! etcd's side, over its gRPC API through `etcd-client`, each workload as an etcd-based
//! registry or config store does it: a lease per instance, keep-alive streams, serializable
//! prefix reads, prefix watches, puts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use etcd_client::{Client, GetOptions, PutOptions, WatchOptions};

use crate::load::{Measured, closed_loop};
use std::path::Path;
use std::process::Stdio;

use anyhow::bail;
use tokio::process::Command;

use crate::process::{Server, free_port};
use crate::workload::{Side, Sizes};

/// etcd and a pool of clients (each its own HTTP/2 connection), so concurrency is not capped by
/// one connection's streams.
pub(crate) struct Etcd {
    server: Server,
    clients: Vec<Client>,
    /// Lease ids of round 0's instances, for the keep-alive workload.
    leases: Arc<Mutex<Vec<i64>>>,
}

impl Etcd {
    pub(crate) async fn connect(server: Server, connections: usize) -> anyhow::Result<Self> {
        let endpoint = server.url.trim_start_matches("http://").to_owned();
        let mut clients = Vec::new();
        for _ in 0..connections.max(1) {
            clients.push(
                Client::connect([endpoint.as_str()], None)
                    .await
                    .context("connecting to etcd")?,
            );
        }
        Ok(Self {
            server,
            clients,
            leases: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn client(&self, worker: usize) -> Client {
        self.clients[worker % self.clients.len()].clone()
    }

    fn clients(&self) -> Arc<Vec<Client>> {
        Arc::new(self.clients.clone())
    }
}

impl Side for Etcd {
    fn registry_server(&self) -> &Server {
        &self.server
    }

    fn config_server(&self) -> &Server {
        &self.server
    }

    async fn register(&self, round: u32, sizes: Sizes) -> Measured {
        let (clients, leases) = (self.clients(), Arc::clone(&self.leases));
        closed_loop(
            sizes.concurrency,
            Duration::from_secs(600),
            sizes.instances,
            move |worker, i| {
                let mut client = clients[worker % clients.len()].clone();
                let leases = Arc::clone(&leases);
                async move {
                    let Ok(lease) = client.lease_grant(600, None).await else {
                        return false;
                    };
                    let key = format!("/services/svc-{}/r{round}-{i}", i % sizes.services);
                    let value = format!(
                        r#"{{"host":"10.{}.{}.{}","port":8080}}"#,
                        (i >> 16) & 255,
                        (i >> 8) & 255,
                        i & 255
                    );
                    let ok = client
                        .put(key, value, Some(PutOptions::new().with_lease(lease.id())))
                        .await
                        .is_ok();
                    if ok && round == 0 {
                        leases
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(lease.id());
                    }
                    ok
                }
            },
        )
        .await
    }

    async fn heartbeats(&self, sizes: Sizes) -> Measured {
        // One keep-alive stream per worker, as each etcd client keeps its lease alive.
        let leases = self
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut keepers = Vec::new();
        for worker in 0..sizes.concurrency {
            let lease = leases[(worker * 7919) % leases.len().max(1)];
            match self.client(worker).lease_keep_alive(lease).await {
                Ok(pair) => keepers.push(tokio::sync::Mutex::new(pair)),
                Err(_) => return Measured::default(),
            }
        }
        let keepers = Arc::new(keepers);
        closed_loop(
            sizes.concurrency,
            sizes.duration,
            u64::MAX,
            move |worker, _| {
                let keepers = Arc::clone(&keepers);
                async move {
                    let mut pair = keepers[worker].lock().await;
                    let (keeper, stream) = &mut *pair;
                    keeper.keep_alive().await.is_ok()
                        && matches!(stream.message().await, Ok(Some(_)))
                }
            },
        )
        .await
    }

    async fn prepare_lookup(&self) -> anyhow::Result<()> {
        let mut client = self.client(0);
        for i in 0..10 {
            client
                .put(
                    format!("/services/lookup/l-{i}"),
                    format!(r#"{{"host":"10.9.0.{i}","port":8080}}"#),
                    None,
                )
                .await?;
        }
        Ok(())
    }

    async fn lookup(&self, sizes: Sizes) -> Measured {
        let clients = self.clients();
        closed_loop(
            sizes.concurrency,
            sizes.duration,
            u64::MAX,
            move |worker, _| {
                let mut client = clients[worker % clients.len()].clone();
                async move {
                    client
                        .get(
                            "/services/lookup/",
                            Some(GetOptions::new().with_prefix().with_serializable()),
                        )
                        .await
                        .is_ok_and(|r| r.kvs().len() == 10)
                }
            },
        )
        .await
    }

    async fn propagation(&self, round: u32, sizes: Sizes) -> anyhow::Result<Vec<Duration>> {
        let prefix = format!("/services/prop{round}/");
        let mut tasks = Vec::new();
        // One connection per watcher, as 1,000 watching services would have (our watchers are
        // 1,000 connections too).
        let endpoint = self.server.url.trim_start_matches("http://").to_owned();
        for _ in 0..sizes.watchers {
            let mut client = Client::connect([endpoint.as_str()], None)
                .await
                .context("a watcher's connection")?;
            let mut stream = client
                .watch(prefix.clone(), Some(WatchOptions::new().with_prefix()))
                .await
                .context("creating a watch")?;
            // Established once etcd confirms the creation.
            let created = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .context("watch creation in 30 s")??;
            anyhow::ensure!(created.is_some_and(|r| r.created()), "watch not created");
            let changes = sizes.changes;
            tasks.push(tokio::spawn(async move {
                let _client = client;
                let mut seen: Vec<(usize, Instant)> = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while seen.len() < changes {
                    let Ok(Ok(Some(response))) =
                        tokio::time::timeout_at(deadline, stream.message()).await
                    else {
                        break;
                    };
                    let at = Instant::now();
                    for _ in response.events() {
                        seen.push((seen.len(), at));
                    }
                }
                seen
            }));
        }
        let mut client = self.client(0);
        let mut sent = Vec::new();
        for k in 0..sizes.changes {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sent.push(Instant::now());
            client
                .put(
                    format!("{prefix}w-{k}"),
                    r#"{"host":"10.8.0.1","port":80}"#,
                    None,
                )
                .await?;
        }
        let mut delays = Vec::new();
        for task in tasks {
            for (k, at) in task.await? {
                if let Some(sent) = sent.get(k) {
                    delays.push(at.saturating_duration_since(*sent));
                }
            }
        }
        delays.sort();
        Ok(delays)
    }

    async fn config_writes(&self, sizes: Sizes) -> Measured {
        let clients = self.clients();
        closed_loop(
            sizes.concurrency,
            sizes.duration,
            u64::MAX,
            move |worker, i| {
                let mut client = clients[worker % clients.len()].clone();
                async move {
                    client
                        .put(format!("/config/app-{worker}"), format!("key: {i}\n"), None)
                        .await
                        .is_ok()
                }
            },
        )
        .await
    }

    async fn config_reads(&self, sizes: Sizes) -> Measured {
        let clients = self.clients();
        closed_loop(
            sizes.concurrency,
            sizes.duration,
            u64::MAX,
            move |worker, _| {
                let mut client = clients[worker % clients.len()].clone();
                async move {
                    client
                        .get("/config/app-0", Some(GetOptions::new().with_serializable()))
                        .await
                        .is_ok_and(|r| !r.kvs().is_empty())
                }
            },
        )
        .await
    }
}

/// Starts etcd member `name` with its data in `data_dir`, in the cluster `initial_cluster`.
fn spawn_member(
    name: &str,
    data_dir: &Path,
    client_url: &str,
    peer_url: &str,
    initial_cluster: &str,
) -> anyhow::Result<Server> {
    let log = std::fs::File::create(data_dir.with_extension("log"))?;
    let child = Command::new("etcd")
        .arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .arg("--initial-cluster-state=new")
        .arg("--quota-backend-bytes=8589934592")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting etcd")?;
    let pid = child.id().context("pid")?;
    Ok(Server::new(child, pid, client_url.to_owned(), data_dir))
}

/// Waits up to 30 s for `member` to answer `/health`.
async fn wait_healthy(member: &Server) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http
            .get(format!("{}/health", member.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "etcd at {} did not become healthy in 30 s (see its log next to its data)",
        member.url
    )
}

/// Starts a single-node etcd with its data in `data_dir`, and waits until it answers.
pub(crate) async fn start_etcd(data_dir: &Path) -> anyhow::Result<Server> {
    let (client, peer) = (free_port()?, free_port()?);
    let peer_url = format!("http://127.0.0.1:{peer}");
    let member = spawn_member(
        "bench",
        data_dir,
        &format!("http://127.0.0.1:{client}"),
        &peer_url,
        &format!("bench={peer_url}"),
    )?;
    wait_healthy(&member).await?;
    Ok(member)
}

/// A three-member etcd cluster on this machine, and clients spread over its members.
pub(crate) struct EtcdCluster {
    _members: Vec<Server>,
    clients: Arc<Vec<Client>>,
}

impl EtcdCluster {
    /// Starts three members under `dir` and waits until each answers.
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            members.push(spawn_member(
                &format!("e{i}"),
                &dir.join(format!("e{i}")),
                &format!("http://127.0.0.1:{client}"),
                &format!("http://127.0.0.1:{peer}"),
                &initial,
            )?);
            endpoints.push(format!("127.0.0.1:{client}"));
        }
        for member in &members {
            wait_healthy(member).await?;
        }
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(
                Client::connect(&endpoints, None)
                    .await
                    .context("connecting to etcd")?,
            );
        }
        Ok(Self {
            _members: members,
            clients: Arc::new(clients),
        })
    }

    /// `writers` writers each rewriting a key of its own for `duration`.
    pub(crate) async fn writes(&self, writers: usize, duration: Duration) -> Measured {
        let clients = Arc::clone(&self.clients);
        closed_loop(writers, duration, u64::MAX, move |worker, i| {
            let mut client = clients[worker % clients.len()].clone();
            async move {
                client
                    .put(format!("/config/app-{worker}"), format!("key: {i}\n"), None)
                    .await
                    .is_ok()
            }
        })
        .await
    }
}
