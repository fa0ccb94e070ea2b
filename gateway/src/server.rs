//! Running a gateway: the first route set (failing fast when it does not compile), the route
//! source followed, the proxy and the admin API served until shutdown, which stops accepting
//! and lets requests and streams in flight finish within the grace period.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin};
use crate::config::{GatewayConfig, GatewayConfigError};
use crate::live::LiveRoutes;
use crate::proxy::{self, Proxy};
use crate::rate_limit::SharedCounters;
use crate::routes::{Resources, RouteError};
use crate::source::{self, SourceError};
use crate::upstream::FixedClients;

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] GatewayConfigError),
    /// The first route set cannot be had.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The first route set does not compile.
    #[error("routes: {0}")]
    Routes(#[from] RouteError),
    /// The TLS material cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] msakit_server_kit::TlsError),
    /// The SDK (registry, config server) cannot be set up.
    #[error("SDK: {0}")]
    Sdk(#[from] msakit::BuildError),
    /// An HTTP client cannot be set up.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// Redis's URL is wrong.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the gateway on `listener` and its admin API on `admin_listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    admin_listener: TcpListener,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    config.validate()?;
    let tls = config.tls.as_ref().map(|tls| tls.acceptor()).transpose()?;
    let stop = CancellationToken::new();
    let needs_sdk = !config.registry.is_empty() || config.routes_from_config.is_some();
    let sdk = needs_sdk
        .then(|| {
            let mut builder = msakit::Client::builder()
                .registry_urls(config.registry.clone())
                .config_urls(config.config_server.clone());
            if let Some(token) = &config.token {
                builder = builder.token(token.clone());
            }
            if let Some(dir) = &config.data_dir {
                builder = builder.discovery_cache_dir(dir.join("discovery"));
            }
            builder.build()
        })
        .transpose()?;
    let shared_counters = config
        .redis
        .as_ref()
        .map(|redis| SharedCounters::connect(&redis.url, &redis.prefix))
        .transpose()?;
    let metrics = msakit_server_kit::ServerMetrics::new(msakit_server_kit::MetricNames {
        requests: "gateway_request_duration_seconds",
        watchers: "gateway_open_streams",
    });
    let resources = Resources {
        sdk: sdk.clone().filter(|_| !config.registry.is_empty()),
        fixed: FixedClients::new()?,
        jwks_http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?,
        shared_counters: shared_counters.clone(),
        default_max_body: config.max_body_bytes,
        metrics: metrics.clone(),
    };
    let live = match (&config.routes_file, &config.routes_from_config, &sdk) {
        (Some(path), _, _) => {
            let (bytes, set) = source::read_file(path)?;
            let live = Arc::new(LiveRoutes::new(
                &set,
                format!("file:{}", path.display()),
                resources,
            )?);
            source::watch_file(path.clone(), bytes, Arc::clone(&live), stop.clone());
            live
        }
        (None, Some(from), Some(sdk)) => {
            let followed = source::follow_config(sdk, from, config.data_dir.as_deref()).await?;
            let set = followed.current();
            let live = Arc::new(LiveRoutes::new(&set, source::describe(from), resources)?);
            source::watch_config(followed, Arc::clone(&live), stop.clone());
            live
        }
        _ => Arc::new(LiveRoutes::new(&config.routes, "inline".into(), resources)?),
    };
    metrics.spawn_upkeep(stop.clone());
    {
        // Idle rate-limit keys are forgotten, so memory follows active clients only.
        let (live, stop) = (Arc::clone(&live), stop.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = ticks.tick() => live.current().forget_idle(),
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    let proxy_state = Proxy {
        routes: Arc::clone(&live),
        scheme: if tls.is_some() { "https" } else { "http" },
        metrics: metrics.clone(),
    };
    // Every request is the proxy's; a server span each while traces are recorded.
    let app = msakit_server_kit::traced(
        Router::new()
            .fallback(proxy::handle)
            .with_state(proxy_state),
    );
    let admin_app = admin::router(Admin {
        routes: Arc::clone(&live),
        metrics: metrics.clone(),
        tokens: Arc::new(config.admin.tokens.clone()),
        shared_counters,
    });
    tracing::info!(
        addr = %listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        routes = live.current().routes().len(),
        source = %live.status().source,
        "gateway listening"
    );
    let ended = CancellationToken::new();
    let options = |rejections| msakit_server_kit::ServeOptions {
        limits: config.connections,
        tls: tls.clone(),
        grace: config.shutdown_grace,
        rejections,
    };
    let admin_server = tokio::spawn(msakit_server_kit::serve_until(
        admin_listener,
        admin_app,
        ended.clone().cancelled_owned(),
        CancellationToken::new(),
        msakit_server_kit::ServeOptions {
            tls: None,
            ..options(metrics.rejections())
        },
    ));
    let result = msakit_server_kit::serve_until(
        listener,
        app,
        shutdown,
        stop.clone(),
        options(metrics.rejections()),
    )
    .await;
    ended.cancel();
    stop.cancel();
    let _ = admin_server.await;
    tracing::info!("gateway stopped");
    result.map_err(GatewayError::from)
}
