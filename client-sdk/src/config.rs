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

use crate::backoff::Reconnect;
use crate::sse::SseReader;

/// What to fetch, from where.
#[derive(Debug, Clone)]
pub struct ConfigClientOptions {
    /// Config-server base URLs; the next is tried when one fails.
    pub server_urls: Vec<String>,
    /// The application.
    pub application: String,
    /// The profiles, the last winning.
    pub profiles: Vec<String>,
    /// The label. Default `main`.
    pub label: String,
    /// Where the last good configuration is kept (a JSON file). Default none.
    pub cache_file: Option<PathBuf>,
    /// A bearer token with the read scope, when the server requires one.
    pub token: Option<String>,
    /// Extra CAs to trust and a client certificate, for HTTPS. Default: public roots only.
    pub tls: crate::TlsOptions,
}

impl ConfigClientOptions {
    /// Options for `application` with `profiles` from one server, label `main`.
    pub fn new(server_url: impl Into<String>, application: &str, profiles: &[&str]) -> Self {
        Self {
            server_urls: vec![server_url.into()],
            application: application.to_owned(),
            profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
            label: "main".to_owned(),
            cache_file: None,
            token: None,
            tls: crate::TlsOptions::default(),
        }
    }
}

/// Why no configuration could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConfigClientError {
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
    client: reqwest::Client,
    streaming: reqwest::Client,
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

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.options.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn fetch(&self) -> Result<Resolved, String> {
        let mut reason = String::from("no server configured");
        for base in &self.options.server_urls {
            match self
                .authorised(self.client.get(self.url(base, "resolve")))
                .send()
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
    /// Fetches the configuration (or, when no server answers, reads the last good copy), then
    /// follows the server's changes in the background.
    pub async fn start(options: ConfigClientOptions) -> Result<ConfigClient<T>, ConfigClientError> {
        let fetcher = Fetcher {
            client: options.tls.short_client(Duration::from_secs(5)),
            streaming: options.tls.streaming_client(Duration::from_secs(5)),
            options,
        };
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
        let base = fetcher.options.server_urls[attempt % fetcher.options.server_urls.len()].clone();
        let request = fetcher.authorised(fetcher.streaming.get(fetcher.url(&base, "watch")));
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
