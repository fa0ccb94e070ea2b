//! Server-side health checks, Consul style: the registry probes instances that declared a check
//! and marks them DOWN after N failures in a row, UP after M successes in a row.
//!
//! One task follows the registry's change stream and keeps one probe task per checked instance:
//! started when an instance registers with a check, restarted when its check or address changes,
//! stopped when it leaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use msakit_api::registry::{Change, CheckKind, HealthCheck, Instance, Scheme};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::registry::{Registry, RegistryEvent};
use crate::writes::{WriteError, Writes};

/// What a probe task probes; a change to any of it restarts the task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    scheme: Scheme,
    check: HealthCheck,
}

impl Target {
    fn of(instance: &Instance) -> Option<Self> {
        Some(Self {
            host: instance.host.clone(),
            port: instance.port,
            scheme: instance.scheme,
            check: instance.health_check.clone()?,
        })
    }
}

/// Runs until `shutdown`, keeping one probe task per checked instance.
pub(crate) async fn run(registry: Arc<Registry>, writes: Writes, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the health-check client; checks disabled");
            return;
        }
    };
    let mut probes: HashMap<(String, String, String), (Target, AbortHandle)> = HashMap::new();
    let (checked, mut changes) = registry.checks_and_subscribe();
    let update = |instance: &Instance, probes: &mut HashMap<_, (Target, AbortHandle)>| {
        let key = (
            instance.namespace.clone(),
            instance.service.clone(),
            instance.id.clone(),
        );
        let target = Target::of(instance);
        if probes.get(&key).map(|(t, _)| Some(t)) == Some(target.as_ref()) {
            return;
        }
        if let Some((_, task)) = probes.remove(&key) {
            task.abort();
        }
        if let Some(target) = target {
            let task = tokio::spawn(probe_loop(
                writes.clone(),
                client.clone(),
                instance.clone(),
                target.clone(),
            ));
            probes.insert(key, (target, task.abort_handle()));
        }
    };
    for instance in &checked {
        update(instance, &mut probes);
    }
    loop {
        let record = tokio::select! {
            record = changes.recv() => record,
            _ = shutdown.cancelled() => break,
        };
        match record {
            Ok(RegistryEvent::Changed(record)) => match &record.change {
                Change::Upserted { instance } => update(instance, &mut probes),
                Change::Removed {
                    namespace,
                    service,
                    id,
                    ..
                } => {
                    let key = (namespace.clone(), service.clone(), id.clone());
                    if let Some((_, task)) = probes.remove(&key) {
                        task.abort();
                    }
                }
            },
            Ok(RegistryEvent::Replaced)
            | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Fell behind, or the state was replaced: rebuild from the current state.
                let (checked, receiver) = registry.checks_and_subscribe();
                changes = receiver;
                for (_, (_, task)) in probes.drain() {
                    task.abort();
                }
                for instance in &checked {
                    update(instance, &mut probes);
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
    for (_, (_, task)) in probes {
        task.abort();
    }
}

async fn probe_loop(writes: Writes, client: reqwest::Client, probed: Instance, target: Target) {
    let (namespace, service, id) = (&probed.namespace, &probed.service, &probed.id);
    let check = &target.check;
    let mut ticks = tokio::time::interval(Duration::from_millis(check.interval_ms));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut failures, mut successes) = (0u32, 0u32);
    let mut passing: Option<bool> = None;
    loop {
        ticks.tick().await;
        let ok = probe(&client, &target).await;
        let verdict = if ok {
            successes += 1;
            failures = 0;
            (passing != Some(true) && successes >= check.successes_before_up).then_some(true)
        } else {
            failures += 1;
            successes = 0;
            (passing != Some(false) && failures >= check.failures_before_down).then_some(false)
        };
        // In a cluster only the leader records verdicts; the others keep probing so that
        // whichever leads next has a verdict ready.
        if let Some(verdict) = verdict.filter(|_| writes.decides()) {
            tracing::info!(%namespace, %service, %id, passing = verdict, "health check verdict");
            match writes.check_verdict(&probed, verdict).await {
                Ok(_) => passing = Some(verdict),
                Err(WriteError::Registry(_)) => return,
                Err(e) => {
                    tracing::warn!(%namespace, %service, %id, error = %e, "verdict not recorded")
                }
            }
        }
    }
}

async fn probe(client: &reqwest::Client, target: &Target) -> bool {
    let timeout = Duration::from_millis(target.check.timeout_ms);
    match target.check.kind {
        CheckKind::Tcp => matches!(
            tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            )
            .await,
            Ok(Ok(_))
        ),
        CheckKind::Http => {
            let scheme = match target.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            };
            let host = if target.host.contains(':') && !target.host.starts_with('[') {
                format!("[{}]", target.host)
            } else {
                target.host.clone()
            };
            let path = target.check.path.as_deref().unwrap_or("/");
            let url = format!("{scheme}://{host}:{}{path}", target.port);
            matches!(
                client.get(url).timeout(timeout).send().await,
                Ok(response) if response.status().is_success()
            )
        }
    }
}
