//! The servers under test as child processes — ours (this binary started again with a `serve-*`
//! subcommand) and etcd — and what /proc says of them: resident memory and CPU time.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A server process, killed when dropped.
pub(crate) struct Server {
    /// Held so the process is killed with it.
    _child: Child,
    pid: u32,
    /// Its base URL (`http://127.0.0.1:port`) or, for etcd, its client endpoint.
    pub(crate) url: String,
    /// Where it keeps its data.
    data_dir: std::path::PathBuf,
}

impl Server {
    pub(crate) fn new(child: Child, pid: u32, url: String, data_dir: &Path) -> Self {
        Self {
            _child: child,
            pid,
            url,
            data_dir: data_dir.to_owned(),
        }
    }

    /// Bytes in its data directory's files now, in MiB.
    pub(crate) fn data_mib(&self) -> f64 {
        let bytes: u64 = std::fs::read_dir(&self.data_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        bytes as f64 / (1024.0 * 1024.0)
    }

    /// Resident memory now, in MiB.
    pub(crate) fn rss_mib(&self) -> f64 {
        rss_mib_of(self.pid)
    }

    /// Open file descriptors now.
    pub(crate) fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count())
    }

    /// User + system CPU time so far.
    pub(crate) fn cpu(&self) -> Duration {
        cpu_of(self.pid)
    }
}

/// The resident memory of process `pid` now, in MiB (0 when it is gone).
pub(crate) fn rss_mib_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The user + system CPU time of process `pid` so far.
pub(crate) fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // Linux reports in USER_HZ, 100 per second on every common configuration.
    Duration::from_millis(ticks * 10)
}

/// A free loopback port (free when asked; bind it soon).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `msakit-bench serve-<what> --data-dir <dir> <extra>` and waits for its `READY <port>`
/// line.
pub(crate) async fn start_ours(
    what: &str,
    data_dir: &Path,
    extra: &[String],
) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(data_dir)?;
    let log = std::fs::File::create(data_dir.with_extension("log"))?;
    let mut child = Command::new(exe)
        .args([&format!("serve-{what}"), "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let pid = child.id().context("pid")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(port) = line.strip_prefix("READY ") {
                return Ok(port.trim().parse::<u16>()?);
            }
        }
        bail!("{what} exited before it was ready")
    })
    .await
    .with_context(|| format!("{what} not ready in 30 s"))??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Server::new(
        child,
        pid,
        format!("http://127.0.0.1:{port}"),
        data_dir,
    ))
}

/// Whether `etcd` is on PATH.
pub(crate) fn etcd_installed() -> bool {
    std::process::Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `msakit-bench serve-registry`: the registry with a data directory (write-behind durability).
pub(crate) async fn serve_registry(
    data_dir: &Path,
    listen: Option<std::net::SocketAddr>,
    cluster: Option<msakit_raft::ClusterConfig>,
) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(listen.unwrap_or_else(|| ([127, 0, 0, 1], 0).into())).await?;
    let config = msakit_registry::RegistryConfig {
        listen: listener.local_addr()?,
        data_dir: Some(data_dir.to_owned()),
        cluster,
        ..Default::default()
    };
    let mut config = config;
    config.limits.max_instances = 2_000_000;
    config.self_preservation.enabled = false;
    println!("READY {}", listener.local_addr()?.port());
    msakit_registry::run(listener, config, msakit_registry::shutdown_signal()).await?;
    Ok(())
}

/// `msakit-bench serve-config`: the config server (one fsync'd transaction per write), alone or,
/// with `cluster`, as a node of a cluster.
pub(crate) async fn serve_config(
    data_dir: &Path,
    listen: Option<std::net::SocketAddr>,
    cluster: Option<msakit_raft::ClusterConfig>,
) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(listen.unwrap_or_else(|| ([127, 0, 0, 1], 0).into())).await?;
    let config = msakit_config_server::ConfigServerConfig {
        listen: listener.local_addr()?,
        data_dir: data_dir.to_owned(),
        cluster,
        ..Default::default()
    };
    println!("READY {}", listener.local_addr()?.port());
    msakit_config_server::run(listener, config, msakit_config_server::shutdown_signal()).await?;
    Ok(())
}
