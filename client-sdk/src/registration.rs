//! Registering this service's instance: register, heartbeat at a third of the lease, register
//! again when the registry answers 404 (it restarted, or evicted us), back off while it is down,
//! and deregister on shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use msakit_api::registry::{InstanceStatus, LeaseGranted, RegisterInstance, Scheme};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Reconnect;
use crate::client::Connection;

/// What to register; where is the [`Client`](crate::Client)'s. Built with [`new`](Self::new)
/// and the setters (`.lease(…)`, `.zone(…)`, `.metadata(…)`, `.scheme(…)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistrationOptions {
    /// The service name.
    pub service: String,
    /// This instance's id, unique within the service.
    pub instance_id: String,
    /// Where others reach it.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Its zone, for zone-aware balancing.
    pub zone: Option<String>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// The lease asked for; heartbeats go every third of it. Default 15 s.
    pub lease: Duration,
}

impl RegistrationOptions {
    /// Options for `service`/`instance_id` at `host:port`, with the defaults.
    pub fn new(service: &str, instance_id: &str, host: &str, port: u16) -> Self {
        Self {
            service: service.to_owned(),
            instance_id: instance_id.to_owned(),
            host: host.to_owned(),
            port,
            scheme: Scheme::Http,
            zone: None,
            metadata: BTreeMap::new(),
            lease: Duration::from_secs(15),
        }
    }

    /// `http` or `https`.
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Its zone.
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// One metadata entry more.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The lease to ask for.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
}

/// A running registration; heartbeats until [`shutdown`](Self::shutdown) (or drop, which stops
/// heartbeating and deregisters in the background).
#[derive(Debug)]
pub struct Registration {
    stop: CancellationToken,
    status: watch::Sender<InstanceStatus>,
    task: Option<JoinHandle<()>>,
    registered: watch::Receiver<bool>,
}

struct Registrar {
    options: RegistrationOptions,
    registry: Connection,
    /// Which URL is in use.
    current: usize,
}

impl Registrar {
    fn url(&self, suffix: &str) -> String {
        let urls = &self.registry.urls;
        let base = urls[self.current % urls.len()].trim_end_matches('/');
        format!(
            "{base}/v1/services/{}/instances/{}{suffix}",
            self.options.service, self.options.instance_id
        )
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        self.registry
            .authorised(request)
            .timeout(self.registry.request_timeout)
    }

    async fn register(&self, status: InstanceStatus) -> Result<LeaseGranted, String> {
        let body = RegisterInstance {
            host: self.options.host.clone(),
            port: self.options.port,
            scheme: self.options.scheme,
            zone: self.options.zone.clone(),
            weight: 100,
            metadata: self.options.metadata.clone(),
            status,
            lease_ttl_ms: Some(self.options.lease.as_millis() as u64),
            health_check: None,
        };
        let response = self
            .authorised(self.registry.http.put(self.url("")).json(&body))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("registry answered {}", response.status()));
        }
        response.json().await.map_err(|e| e.to_string())
    }

    /// `Ok(true)` renewed, `Ok(false)` the registry does not know us.
    async fn heartbeat(&self) -> Result<bool, String> {
        let response = self
            .authorised(self.registry.http.put(self.url("/heartbeat")))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            other => Err(format!("registry answered {other}")),
        }
    }

    async fn deregister(&self) {
        let _ = self
            .authorised(self.registry.http.delete(self.url("")))
            .send()
            .await;
    }
}

impl Registration {
    /// Starts registering with `registry` in the background (see
    /// [`Client::registration`](crate::Client::registration)); [`registered`](Self::registered)
    /// waits for the first success.
    pub(crate) fn start(registry: Connection, options: RegistrationOptions) -> Registration {
        assert!(!registry.urls.is_empty(), "at least one registry URL");
        let stop = CancellationToken::new();
        let (status, status_rx) = watch::channel(InstanceStatus::Up);
        let (registered_tx, registered) = watch::channel(false);
        let registrar = Registrar {
            options,
            registry,
            current: 0,
        };
        let task = tokio::spawn(run(registrar, status_rx, registered_tx, stop.clone()));
        Registration {
            stop,
            status,
            task: Some(task),
            registered,
        }
    }

    /// Waits until the registry has accepted the registration (again, after an outage).
    pub async fn registered(&self) {
        let mut registered = self.registered.clone();
        let _ = registered.wait_for(|r| *r).await;
    }

    /// Whether the last exchange with the registry succeeded.
    pub fn is_registered(&self) -> bool {
        *self.registered.borrow()
    }

    /// Reports a new status (e.g. OUT_OF_SERVICE while draining); sent at once.
    pub fn set_status(&self, status: InstanceStatus) {
        self.status.send_replace(status);
    }

    /// Stops heartbeating and deregisters, waiting for the registry's answer.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The task deregisters on its own once cancelled.
        self.stop.cancel();
    }
}

async fn run(
    registrar: Registrar,
    mut status: watch::Receiver<InstanceStatus>,
    registered: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut registrar = registrar;
    let every = registrar.options.lease / 3;
    // While the registry is down, retries back off with jitter but never wait longer than a
    // heartbeat: one request per instance per heartbeat interval is the load the registry
    // expects anyway, and an instance is back within one heartbeat of the registry's return.
    let mut reconnect = Reconnect::new(every);
    let mut need_register = true;
    loop {
        let current = *status.borrow_and_update();
        let outcome = if need_register {
            registrar.register(current).await.map(|_| true)
        } else {
            registrar.heartbeat().await
        };
        let wait = match outcome {
            Ok(true) => {
                if need_register {
                    tracing::info!(service = %registrar.options.service, id = %registrar.options.instance_id, "registered");
                }
                need_register = false;
                reconnect.reset();
                registered.send_replace(true);
                every
            }
            Ok(false) => {
                tracing::info!("the registry no longer knows this instance; registering again");
                need_register = true;
                Duration::ZERO
            }
            Err(e) => {
                tracing::warn!(error = %e, "registry unreachable; retrying with backoff");
                need_register = true;
                registered.send_replace(false);
                registrar.current += 1;
                reconnect.next_delay()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = status.changed() => if changed.is_ok() { need_register = true },
            _ = stop.cancelled() => {
                registrar.deregister().await;
                tracing::info!(service = %registrar.options.service, id = %registrar.options.instance_id, "deregistered");
                return;
            }
        }
    }
}
