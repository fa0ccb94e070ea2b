//! A local cache of other services' instances, filled on first use and then kept current by the
//! registry's watch stream. Once a service's instances are known, a lookup never waits for the
//! registry: when it is down, the last known instances keep being served (and the cache says how
//! old it is).

use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use msakit_api::registry::{
    Change, ChangeEvent, Instance, InstanceStatus, ServiceInstances, Snapshot,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backoff::Reconnect;
use crate::client::Connection;
use crate::sse::SseReader;

/// Where the registry is, and what discovery keeps (from the [`Client`](crate::Client)).
#[derive(Debug, Clone)]
pub(crate) struct DiscoveryOptions {
    /// The registry.
    pub(crate) connection: Connection,
    /// This service's zone: instances in it are preferred.
    pub(crate) zone: Option<String>,
    /// Where each service's last known instances are kept (`{service}.json`), so a service can
    /// start while the registry is down.
    pub(crate) cache_dir: Option<std::path::PathBuf>,
}

/// Why instances could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The service has never been seen and no registry answered.
    #[error("no registry answered for service {service}: {reason}")]
    Unavailable {
        /// The service.
        service: String,
        /// The last failure.
        reason: String,
    },
}

/// A service's instances as last seen.
#[derive(Debug, Clone)]
struct Known {
    instances: Arc<Vec<Instance>>,
    /// When the registry last confirmed them.
    fresh_at: Instant,
    /// Whether the watch stream is connected.
    live: bool,
}

/// The discovery cache. Cheap to clone; clones share the cache and its watch tasks.
#[derive(Debug, Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: DiscoveryOptions,
    services: RwLock<HashMap<String, Known>>,
    /// Bumped whenever any service's instances change, for followers (see `tower_discover`).
    updates: tokio::sync::watch::Sender<u64>,
    /// Bumped with `updates`, and read without a lock: a caller that saw the same generation
    /// before still holds every service's current instances.
    generation: AtomicU64,
    stop: CancellationToken,
}

impl Inner {
    /// Tells callers (the generation) and followers (`updates`) that instances changed.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
        self.updates.send_modify(|n| *n += 1);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Discovery {
    /// A cache over these registries (see [`Client::discovery`](crate::Client::discovery)).
    pub(crate) fn new(options: DiscoveryOptions) -> Self {
        assert!(
            !options.connection.urls.is_empty(),
            "at least one registry URL"
        );
        Self {
            inner: Arc::new(Inner {
                options,
                services: RwLock::new(HashMap::default()),
                updates: tokio::sync::watch::channel(0).0,
                generation: AtomicU64::new(0),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// The cached instances of `service`, if it is known: what [`Discovery::instances`] answers
    /// once it has data, without a future.
    pub(crate) fn cached(&self, service: &str) -> Option<Arc<Vec<Instance>>> {
        self.inner
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
            .map(|known| Arc::clone(&known.instances))
    }

    /// Every known instance of `service`, whatever its status. The first call asks the registry
    /// and starts watching; later calls answer from the cache at once.
    pub async fn instances(&self, service: &str) -> Result<Arc<Vec<Instance>>, DiscoveryError> {
        if let Some(instances) = self.cached(service) {
            return Ok(instances);
        }
        let instances = match self.fetch(service).await {
            Ok(fetched) => {
                persist(&self.inner, service, &fetched.instances);
                Arc::new(fetched.instances)
            }
            Err(error) => match load(&self.inner, service) {
                Some(cached) => {
                    tracing::warn!(%service, %error, "registry unreachable; starting from the instances kept on disk");
                    Arc::new(cached)
                }
                None => return Err(error),
            },
        };
        let first = {
            let mut services = self
                .inner
                .services
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let first = !services.contains_key(service);
            services.entry(service.to_owned()).or_insert(Known {
                instances: Arc::clone(&instances),
                fresh_at: Instant::now(),
                live: false,
            });
            first
        };
        if first {
            self.inner.changed();
            tokio::spawn(watch(Arc::downgrade(&self.inner), service.to_owned()));
        }
        Ok(instances)
    }

    /// The instances to call: UP ones, those in this service's zone first when there are any.
    pub async fn available(&self, service: &str) -> Result<Vec<Instance>, DiscoveryError> {
        let all = self.instances(service).await?;
        let up: Vec<Instance> = all
            .iter()
            .filter(|i| i.status == InstanceStatus::Up)
            .cloned()
            .collect();
        if let Some(zone) = &self.inner.options.zone {
            let local: Vec<Instance> = up
                .iter()
                .filter(|i| i.zone.as_ref() == Some(zone))
                .cloned()
                .collect();
            if !local.is_empty() {
                return Ok(local);
            }
        }
        Ok(up)
    }

    /// Counts changes to any cached service's instances: read before [`Discovery::cached`], it
    /// tells a caller later whether what it got then is still current.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// A receiver told of every change to any cached service's instances.
    pub(crate) fn updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.updates.subscribe()
    }

    /// This service's zone, if set.
    pub fn zone(&self) -> Option<&str> {
        self.inner.options.zone.as_deref()
    }

    /// How long ago the registry last confirmed `service`'s instances, and whether the watch is
    /// connected; `None` for a service never looked up.
    pub fn staleness(&self, service: &str) -> Option<(Duration, bool)> {
        let services = self
            .inner
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner());
        services.get(service).map(|k| {
            if k.live {
                (Duration::ZERO, true)
            } else {
                (k.fresh_at.elapsed(), false)
            }
        })
    }

    /// The names of the services that have at least one instance, asked of the registry now
    /// (not cached): what a caller that must find services it was not told about starts from,
    /// then [`instances`](Self::instances) of each.
    pub async fn services(&self) -> Result<Vec<String>, DiscoveryError> {
        let mut reason = String::new();
        let registry = &self.inner.options.connection;
        for base in &registry.urls {
            let url = format!("{}/v1/services", base.trim_end_matches('/'));
            let request = registry
                .authorised(registry.http.get(url))
                .timeout(registry.request_timeout);
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    match response.json::<msakit_api::registry::ServiceList>().await {
                        Ok(list) => return Ok(list.services.into_iter().map(|s| s.name).collect()),
                        Err(e) => reason = e.to_string(),
                    }
                }
                Ok(response) => reason = format!("registry answered {}", response.status()),
                Err(e) => reason = e.to_string(),
            }
        }
        Err(DiscoveryError::Unavailable {
            service: "*".to_owned(),
            reason,
        })
    }

    async fn fetch(&self, service: &str) -> Result<ServiceInstances, DiscoveryError> {
        let mut reason = String::new();
        let registry = &self.inner.options.connection;
        let span = tracing::debug_span!(
            target: crate::trace::TARGET,
            "registry lookup",
            otel.kind = "client",
            msakit.service = service,
        );
        for base in &registry.urls {
            let url = format!("{}/v1/services/{service}", base.trim_end_matches('/'));
            let request =
                crate::trace::propagate(&span, registry.authorised(registry.http.get(url)))
                    .timeout(registry.request_timeout);
            match request.send().instrument(span.clone()).await {
                Ok(response) if response.status().is_success() => match response.json().await {
                    Ok(found) => return Ok(found),
                    Err(e) => reason = e.to_string(),
                },
                Ok(response) => reason = format!("registry answered {}", response.status()),
                Err(e) => reason = e.to_string(),
            }
        }
        Err(DiscoveryError::Unavailable {
            service: service.to_owned(),
            reason,
        })
    }
}

/// Follows the registry's watch stream for one service, reconnecting (and resuming from the
/// last event id) with backoff, across the registry URLs, for as long as the cache lives.
async fn watch(inner: std::sync::Weak<Inner>, service: String) {
    let mut reconnect = Reconnect::new(Duration::from_secs(10));
    let mut last_id: Option<String> = None;
    let mut attempt = 0usize;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let stop = strong.stop.clone();
        let registry = strong.options.connection.clone();
        let base = registry.urls[attempt % registry.urls.len()].trim_end_matches('/');
        let mut request = registry.authorised(
            registry
                .http
                .get(format!("{base}/v1/watch?service={service}")),
        );
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        drop(strong);
        let connected = tokio::select! {
            response = request.send() => response.ok().filter(|r| r.status().is_success()),
            _ = stop.cancelled() => return,
        };
        if let Some(response) = connected {
            reconnect.reset();
            let mut events = SseReader::new(response);
            loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    _ = stop.cancelled() => return,
                };
                let Some(event) = event else { break };
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                apply(&strong, &service, &event.event, &event.data);
                last_id = event.id.or(last_id);
            }
        }
        if let Some(strong) = inner.upgrade() {
            if let Some(known) = strong
                .services
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&service)
            {
                if known.live {
                    known.live = false;
                    known.fresh_at = Instant::now();
                    metrics::gauge!("msakit_discovery_watch_connected", "service" => service.clone())
                        .set(0.0);
                    tracing::warn!(%service, "registry watch lost; serving the last known instances");
                }
                // Refreshed at each reconnection attempt, so at most the reconnect backoff
                // (10 s) behind.
                metrics::gauge!("msakit_discovery_cache_age_seconds", "service" => service.clone())
                    .set(known.fresh_at.elapsed().as_secs_f64());
            }
        }
        attempt += 1;
        tokio::select! {
            _ = tokio::time::sleep(reconnect.next_delay()) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Keeps a service's instances on disk, when a cache directory is set (written aside, then
/// renamed, so a crash never leaves half a file).
fn persist(inner: &Inner, service: &str, instances: &[Instance]) {
    let Some(dir) = &inner.options.cache_dir else {
        return;
    };
    let path = dir.join(format!("{service}.json"));
    let temporary = dir.join(format!("{service}.json.tmp"));
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| {
            std::fs::write(
                &temporary,
                serde_json::to_vec(instances).unwrap_or_default(),
            )
        })
        .and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(e) = result {
        tracing::warn!(%service, error = %e, "could not keep the instances on disk");
    }
}

fn load(inner: &Inner, service: &str) -> Option<Vec<Instance>> {
    let dir = inner.options.cache_dir.as_ref()?;
    let bytes = std::fs::read(dir.join(format!("{service}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn apply(inner: &Inner, service: &str, event: &str, data: &str) {
    let mut services = inner.services.write().unwrap_or_else(|e| e.into_inner());
    let Some(known) = services.get_mut(service) else {
        return;
    };
    match event {
        "snapshot" => {
            if let Ok(snapshot) = serde_json::from_str::<Snapshot>(data) {
                let instances = snapshot
                    .services
                    .into_iter()
                    .find(|s| s.service == service)
                    .map(|s| s.instances)
                    .unwrap_or_default();
                known.instances = Arc::new(instances);
            }
        }
        "change" => {
            if let Ok(change) = serde_json::from_str::<ChangeEvent>(data) {
                let mut instances = (*known.instances).clone();
                match change.change {
                    Change::Upserted { instance } => {
                        match instances.iter_mut().find(|i| i.id == instance.id) {
                            Some(existing) => *existing = instance,
                            None => {
                                instances.push(instance);
                                instances.sort_by(|a, b| a.id.cmp(&b.id));
                            }
                        }
                    }
                    Change::Removed { id, .. } => instances.retain(|i| i.id != id),
                }
                known.instances = Arc::new(instances);
            }
        }
        _ => return,
    }
    if !known.live {
        metrics::gauge!("msakit_discovery_watch_connected", "service" => service.to_owned())
            .set(1.0);
        metrics::gauge!("msakit_discovery_cache_age_seconds", "service" => service.to_owned())
            .set(0.0);
    }
    known.live = true;
    known.fresh_at = Instant::now();
    let instances = Arc::clone(&known.instances);
    drop(services);
    inner.changed();
    persist(inner, service, &instances);
}
