//! The demo's processes: each server and service is this same binary started again with a
//! subcommand, in one process group of its own, logging to a file in the run directory. Stopping
//! the cluster (or dropping it, on any failure) signals the whole group, and each child also
//! leaves by itself when the orchestrator disappears — no orphans.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One running child.
struct Process {
    child: Child,
    port: u16,
}

/// The running processes, by name.
pub(crate) struct Cluster {
    exe: PathBuf,
    dir: PathBuf,
    group: Option<Pid>,
    processes: BTreeMap<String, Process>,
    /// Variables every child gets.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// An empty cluster whose processes keep their files under `dir`.
    pub(crate) fn new(dir: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe().context("finding this executable")?,
            dir: dir.to_owned(),
            group: None,
            processes: BTreeMap::new(),
            env: Vec::new(),
        })
    }

    /// Sets these variables for every child started from now on.
    pub(crate) fn set_env(&mut self, vars: &[(&str, String)]) {
        self.env
            .extend(vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    }

    /// The run directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts `name` as `msakit-demo <args>` and waits for its `READY <port>` line.
    pub(crate) async fn start(&mut self, name: &str, args: &[String]) -> anyhow::Result<u16> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .env("MSAKIT_DEMO_CHILD", name)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            // The first child leads a new group; the others join it.
            .process_group(self.group.map_or(0, Pid::as_raw));
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("a started child has a pid")?;
        if self.group.is_none() {
            self.group = Some(Pid::from_raw(pid as i32));
        }
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(port) = line.strip_prefix("READY ") {
                    return Ok(port.trim().parse::<u16>()?);
                }
            }
            bail!("{name} exited before it was ready (see {name}.log)")
        })
        .await
        .with_context(|| format!("{name} not ready within 30 s (see {name}.log)"))??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.processes
            .insert(name.to_owned(), Process { child, port: ready });
        Ok(ready)
    }

    /// The port `name` listens on.
    pub(crate) fn port(&self, name: &str) -> Option<u16> {
        self.processes.get(name).map(|p| p.port)
    }

    /// The pids of every running child.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.processes
            .values()
            .filter_map(|p| p.child.id())
            .collect()
    }

    /// Names of the running children.
    pub(crate) fn names(&self) -> Vec<String> {
        self.processes.keys().cloned().collect()
    }

    /// Kills `name` with SIGKILL (no goodbye, no deregistration) and reaps it.
    pub(crate) async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let mut process = self
            .processes
            .remove(name)
            .with_context(|| format!("no process {name}"))?;
        process.child.kill().await?;
        Ok(())
    }

    /// Stops every child: SIGTERM to the group, up to 5 s for graceful shutdown, then SIGKILL.
    pub(crate) async fn stop(&mut self) {
        if let Some(group) = self.group {
            let _ = killpg(group, Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for process in self.processes.values_mut() {
            if tokio::time::timeout_at(deadline, process.child.wait())
                .await
                .is_err()
            {
                let _ = process.child.kill().await;
            }
        }
        if let Some(group) = self.group.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
        self.processes.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}
