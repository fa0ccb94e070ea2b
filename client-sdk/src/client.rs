//! [`Client`], the SDK's one entry point: where the registry and the config servers are, the
//! tokens, TLS, and one HTTP client (one connection pool) that everything built from it shares —
//! registration, discovery, typed configuration and calls to other services.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::discovery::DiscoveryOptions;
use crate::{
    ConfigClient, ConfigClientError, ConfigClientOptions, Discovery, Registration,
    RegistrationOptions, ServiceClient, ServiceClientOptions, TlsOptions,
};

/// How long a control-plane exchange (a registration, a heartbeat, a lookup, a configuration
/// fetch) may take unless set otherwise; watch streams and service calls have none.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where one kind of server is, and how to talk to it.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// The shared HTTP client (no client-wide timeout: streams stay open).
    pub(crate) http: reqwest::Client,
    /// Base URLs; the next is tried when one fails.
    pub(crate) urls: Vec<String>,
    /// A bearer token, if the server wants one.
    pub(crate) token: Option<String>,
    /// How long a short exchange may take.
    pub(crate) request_timeout: Duration,
}

impl Connection {
    /// `request` with the token, if any.
    pub(crate) fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// Why a [`Client`], or something built from it, cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No registry URL was given, and what was asked for needs one.
    #[error("no registry URL configured")]
    NoRegistry,
    /// The HTTP client cannot be built with these settings.
    #[error("the HTTP client cannot be built: {0}")]
    Http(#[source] reqwest::Error),
    /// The options are invalid (a breaker or retry budget setting, named).
    #[error(transparent)]
    Options(#[from] msakit_resilience::InvalidConfig),
}

/// The SDK's entry point; cheap to clone (clones share everything).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// #[derive(serde::Deserialize)]
/// struct Settings { pool: u32 }
///
/// let client = msakit::Client::builder()
///     .registry_url("http://registry:8761")
///     .config_url("http://config:8888")
///     .token("s3cret-token")
///     .build()?;
/// let registration = client.registration(
///     msakit::RegistrationOptions::new("orders", "orders-1", "10.0.0.7", 8080),
/// )?;
/// let settings = client
///     .config::<Settings>(msakit::ConfigClientOptions::new("orders", &["prod"]))
///     .await?;
/// let calls = client.service_client(msakit::ServiceClientOptions::default())?;
/// let answer = calls.get("payment", "/health").send().await?;
/// # drop((registration, settings, answer));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    registry: Connection,
    config: Connection,
    /// One discovery cache for everything built from this client (when there is a registry).
    discovery: Option<Discovery>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never shows a token or key material.
        f.debug_struct("Client")
            .field("registry_urls", &self.inner.registry.urls)
            .field("config_urls", &self.inner.config.urls)
            .field("registry_token", &self.inner.registry.token.is_some())
            .field("config_token", &self.inner.config.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder, to say where the servers are.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The shared discovery cache of other services' instances.
    pub fn discovery(&self) -> Result<Discovery, BuildError> {
        self.inner.discovery.clone().ok_or(BuildError::NoRegistry)
    }

    /// Registers this instance, in the background: heartbeats, registers again after a registry
    /// restart, deregisters on shutdown. Needs a Tokio runtime.
    pub fn registration(&self, options: RegistrationOptions) -> Result<Registration, BuildError> {
        if self.inner.registry.urls.is_empty() {
            return Err(BuildError::NoRegistry);
        }
        Ok(Registration::start(self.inner.registry.clone(), options))
    }

    /// Typed configuration: fetched now (or read from the last good copy), then kept current by
    /// the config server's pushes.
    pub async fn config<T>(
        &self,
        options: ConfigClientOptions,
    ) -> Result<ConfigClient<T>, ConfigClientError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        if self.inner.config.urls.is_empty() {
            return Err(ConfigClientError::NoServer);
        }
        ConfigClient::start(self.inner.config.clone(), options).await
    }

    /// Calls to other services by name, through the shared discovery cache.
    pub fn service_client(
        &self,
        options: ServiceClientOptions,
    ) -> Result<ServiceClient, BuildError> {
        Ok(ServiceClient::new(
            self.discovery()?,
            self.inner.http.clone(),
            options,
        )?)
    }

    /// The shared HTTP client, for the caller's own stacks (a `tower` balancer over
    /// [`discover`](crate::discover), say).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }
}

/// Builds a [`Client`]; every setting is optional until something needs it.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClientBuilder {
    registry_urls: Vec<String>,
    config_urls: Vec<String>,
    token: Option<String>,
    registry_token: Option<String>,
    config_token: Option<String>,
    tls: TlsOptions,
    zone: Option<String>,
    discovery_cache_dir: Option<PathBuf>,
    request_timeout: Option<Duration>,
}

impl ClientBuilder {
    /// Adds a registry URL; the next is tried when one fails.
    pub fn registry_url(mut self, url: impl Into<String>) -> Self {
        self.registry_urls.push(url.into());
        self
    }

    /// The registry URLs, in the order they are tried (replacing any given before).
    pub fn registry_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.registry_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a config server URL; the next is tried when one fails.
    pub fn config_url(mut self, url: impl Into<String>) -> Self {
        self.config_urls.push(url.into());
        self
    }

    /// The config server URLs, in the order they are tried (replacing any given before).
    pub fn config_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// A bearer token for both servers.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The registry's token, when it differs from [`token`](Self::token).
    pub fn registry_token(mut self, token: impl Into<String>) -> Self {
        self.registry_token = Some(token.into());
        self
    }

    /// The config server's token, when it differs from [`token`](Self::token).
    pub fn config_token(mut self, token: impl Into<String>) -> Self {
        self.config_token = Some(token.into());
        self
    }

    /// CAs to trust and a client certificate to present, for every server and service.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// This service's zone: discovery prefers instances in it.
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Where discovery keeps each service's last known instances, so a service can start while
    /// the registry is down.
    pub fn discovery_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.discovery_cache_dir = Some(dir.into());
        self
    }

    /// How long a control-plane exchange may take (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// The client. Needs a Tokio runtime when there is a registry (discovery's watches run on
    /// it).
    pub fn build(self) -> Result<Client, BuildError> {
        let http = self
            .tls
            .builder()
            .connect_timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            // One connection per call in flight, as the balancer counts them; and watch
            // streams that never take a call's place on a shared HTTP/2 connection.
            .http1_only()
            .build()
            .map_err(BuildError::Http)?;
        let request_timeout = self.request_timeout.unwrap_or(REQUEST_TIMEOUT);
        let connection = |urls: Vec<String>, token: Option<String>| Connection {
            http: http.clone(),
            urls,
            token: token.or_else(|| self.token.clone()),
            request_timeout,
        };
        let registry = connection(self.registry_urls, self.registry_token);
        let config = connection(self.config_urls, self.config_token);
        let discovery = (!registry.urls.is_empty()).then(|| {
            Discovery::new(DiscoveryOptions {
                connection: registry.clone(),
                zone: self.zone,
                cache_dir: self.discovery_cache_dir,
            })
        });
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                registry,
                config,
                discovery,
            }),
        })
    }
}
