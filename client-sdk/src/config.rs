//! Typed configuration from the config server that updates itself: the resolved view of
//! (application, profiles, label) is deserialised into the service's own `T`, and every change
//! the server pushes arrives on a `watch` receiver. A change that does not deserialise is refused
//! (the previous value stays). The last good configuration is kept on disk, so a service can start
//! while the config server is down.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use msakit_api::config::{Resolved, unflatten};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backoff::Reconnect;
use crate::client::Connection;
use crate::sse::SseReader;

/// What configuration to follow; where is the [`Client`](crate::Client)'s. Built with
/// [`new`](Self::new) and the setters (`.label(…)`, `.cache_file(…)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConfigClientOptions {
    /// The application.
    pub application: String,
    /// Its profiles, in increasing precedence.
    pub profiles: Vec<String>,
    /// The label (branch); default `main`.
    pub label: String,
    /// Where the last good configuration is kept, so a service can start while the config
    /// server is down. Default none.
    pub cache_file: Option<PathBuf>,
}

impl ConfigClientOptions {
    /// Options for `application` with `profiles`, on label `main`.
    pub fn new(application: &str, profiles: &[&str]) -> Self {
        Self {
            application: application.to_owned(),
            profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
            label: "main".to_owned(),
            cache_file: None,
        }
    }

    /// The label (branch) to follow.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Where to keep the last good configuration.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }
}

/// Why no configuration could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigClientError {
    /// No config server URL was given to the [`Client`](crate::Client).
    #[error("no config server URL configured")]
    NoServer,
    /// No server answered and there is no last-known-good copy.
    #[error("no config server answered ({0}) and there is no cached configuration")]
    Unavailable(String),
    /// The configuration does not fit the type.
    #[error("the configuration does not fit the expected type: {0}")]
    Invalid(String),
}

/// A live, typed configuration. Cheap to clone.
#[derive(Debug)]
pub struct ConfigClient<T> {
    receiver: watch::Receiver<Arc<T>>,
    rejected: Arc<AtomicU64>,
    stop: Arc<StopOnDrop>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for ConfigClient<T> {
    fn clone(&self) -> Self {
        Self {
            receiver: self.receiver.clone(),
            rejected: Arc::clone(&self.rejected),
            stop: Arc::clone(&self.stop),
            _type: PhantomData,
        }
    }
}

#[derive(Debug)]
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

struct Fetcher {
    options: ConfigClientOptions,
    server: Connection,
}

impl Fetcher {
    fn url(&self, base: &str, kind: &str) -> String {
        format!(
            "{}/v1/{kind}/{}/{}/{}",
            base.trim_end_matches('/'),
            self.options.application,
            self.options.profiles.join(","),
            self.options.label.replace('/', "(_)"),
        )
    }

    async fn fetch(&self) -> Result<Resolved, String> {
        let mut reason = String::from("no server configured");
        let span = tracing::debug_span!(
            target: crate::trace::TARGET,
            "config fetch",
            otel.kind = "client",
            msakit.application = %self.options.application,
        );
        for base in &self.server.urls {
            let request = crate::trace::propagate(
                &span,
                self.server
                    .authorised(self.server.http.get(self.url(base, "resolve"))),
            );
            match request
                .timeout(self.server.request_timeout)
                .send()
                .instrument(span.clone())
                .await
            {
                Ok(response) if response.status().is_success() => match response.json().await {
                    Ok(resolved) => return Ok(resolved),
                    Err(e) => reason = e.to_string(),
                },
                Ok(response) => reason = format!("config server answered {}", response.status()),
                Err(e) => reason = e.to_string(),
            }
        }
        Err(reason)
    }
}

fn typed<T: DeserializeOwned>(resolved: &Resolved) -> Result<T, String> {
    serde_json::from_value(unflatten(&resolved.properties)).map_err(|e| e.to_string())
}

fn save(path: &Option<PathBuf>, resolved: &Resolved) {
    if let Some(path) = path {
        let written = serde_json::to_vec(resolved)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let temporary = path.with_extension("tmp");
                std::fs::write(&temporary, bytes)
                    .and_then(|()| std::fs::rename(&temporary, path))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not keep the last good configuration");
        }
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> ConfigClient<T> {
    /// Fetches the configuration from `server` (or reads the last good copy), then follows it
    /// (see [`Client::config`](crate::Client::config)).
    pub(crate) async fn start(
        server: Connection,
        options: ConfigClientOptions,
    ) -> Result<ConfigClient<T>, ConfigClientError> {
        let fetcher = Fetcher { options, server };
        let initial = match fetcher.fetch().await {
            Ok(resolved) => {
                let value = typed::<T>(&resolved).map_err(ConfigClientError::Invalid)?;
                save(&fetcher.options.cache_file, &resolved);
                value
            }
            Err(reason) => {
                let cached = fetcher
                    .options
                    .cache_file
                    .as_ref()
                    .and_then(|path| std::fs::read(path).ok())
                    .and_then(|bytes| serde_json::from_slice::<Resolved>(&bytes).ok())
                    .ok_or_else(|| ConfigClientError::Unavailable(reason.clone()))?;
                tracing::warn!(%reason, "config server unreachable; starting with the last good configuration");
                typed::<T>(&cached).map_err(ConfigClientError::Invalid)?
            }
        };
        let (sender, receiver) = watch::channel(Arc::new(initial));
        let rejected = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        tokio::spawn(follow(fetcher, sender, Arc::clone(&rejected), stop.clone()));
        Ok(ConfigClient {
            receiver,
            rejected,
            stop: Arc::new(StopOnDrop(stop)),
            _type: PhantomData,
        })
    }

    /// The current configuration.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.receiver.borrow())
    }

    /// A receiver told of every accepted change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        self.receiver.clone()
    }

    /// Changes refused because they did not fit `T`.
    pub fn rejected_changes(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// Follows the server's watch stream, reconnecting with backoff across the server URLs.
async fn follow<T: DeserializeOwned + Send + Sync + 'static>(
    fetcher: Fetcher,
    sender: watch::Sender<Arc<T>>,
    rejected: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut reconnect = Reconnect::new(Duration::from_secs(10));
    let mut attempt = 0usize;
    let mut last_index = 0;
    loop {
        let urls = &fetcher.server.urls;
        let base = &urls[attempt % urls.len()];
        let request = fetcher
            .server
            .authorised(fetcher.server.http.get(fetcher.url(base, "watch")));
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
                let Ok(resolved) = serde_json::from_str::<Resolved>(&event.data) else {
                    continue;
                };
                if resolved.index == last_index {
                    continue;
                }
                match typed::<T>(&resolved) {
                    Ok(value) => {
                        last_index = resolved.index;
                        save(&fetcher.options.cache_file, &resolved);
                        sender.send_replace(Arc::new(value));
                    }
                    Err(e) => {
                        rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(index = resolved.index, error = %e, "a configuration change does not fit; keeping the previous one");
                    }
                }
            }
        }
        attempt += 1;
        tokio::select! {
            _ = tokio::time::sleep(reconnect.next_delay()) => {}
            _ = stop.cancelled() => return,
        }
    }
}
