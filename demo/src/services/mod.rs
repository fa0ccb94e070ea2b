//! The demo's business services, each run as its own OS process by `msakit-demo service <kind>`.
//! What they share lives here: the command line, registration, live config, fault injection,
//! `/health` and `/metrics`, the service's own SQLite database, and leaving when the
//! orchestrator is gone.

pub(crate) mod delivery;
pub(crate) mod order;
pub(crate) mod payment;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use msakit::{Client, ConfigClient, ConfigClientOptions, Registration, RegistrationOptions};
use msakit_server_kit::ApiError;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The services of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Orders and the saga.
    Order,
    /// Charges and refunds.
    Payment,
    /// Deliveries.
    Delivery,
}

impl Kind {
    /// The service name in the registry and the application name in the config server.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Order => "order",
            Kind::Payment => "payment",
            Kind::Delivery => "delivery",
        }
    }
}

/// `msakit-demo service …`: one instance of one service.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServiceArgs {
    /// Which service.
    #[arg(value_enum)]
    pub(crate) kind: Kind,
    /// This instance's id.
    #[arg(long)]
    pub(crate) instance: String,
    /// The registry's base URLs (comma-separated: the nodes of a cluster).
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) registry: Vec<String>,
    /// The config server's base URLs (comma-separated: the nodes of a cluster).
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) config: Vec<String>,
    /// The service's own database file (shared by its instances, by no other service).
    #[arg(long)]
    pub(crate) db: PathBuf,
    /// The lease asked of the registry (heartbeats every third of it).
    #[arg(long, default_value = "3s", value_parser = humantime_duration)]
    pub(crate) lease: Duration,
    /// Port to listen on (0: any).
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u16,
    /// Run the choreographed saga's side of this service (msakit-events).
    #[arg(long)]
    pub(crate) choreographed: bool,
    /// The choreographed saga's Kafka brokers (default: the direct transport).
    #[arg(long)]
    pub(crate) kafka: Option<String>,
    /// Prefix of the choreographed saga's topics (keeps runs on one broker apart).
    #[arg(long, default_value = "")]
    pub(crate) topic_prefix: String,
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" | "" => Ok(Duration::from_secs(number)),
        _ => Err(format!("bad duration {text:?}: use ms or s")),
    }
}

/// Fault switches, read live from the config server under `faults:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Faults {
    /// Share of requests answered 503 at once.
    pub(crate) error_rate: f64,
    /// Added to every request.
    pub(crate) latency_ms: u64,
    /// Requests never answer (until the caller gives up).
    pub(crate) hang: bool,
}

/// What every service reads from its config document.
pub(crate) trait ServiceConfig: DeserializeOwned + Send + Sync + 'static {
    fn faults(&self) -> &Faults;
}

/// A started instance: its config, its registration, its listener.
pub(crate) struct Instance<T> {
    pub(crate) args: ServiceArgs,
    /// The SDK, over every registry and config server address given.
    pub(crate) client: Client,
    pub(crate) config: Arc<ConfigClient<T>>,
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) metrics: metrics_exporter_prometheus::PrometheusHandle,
    registration: Option<Registration>,
}

impl<T: ServiceConfig> Instance<T> {
    /// Binds, installs metrics and reads config (failing fast if it cannot).
    pub(crate) async fn start(args: ServiceArgs) -> anyhow::Result<Self> {
        let recorder = msakit_server_kit::prometheus_recorder();
        let metrics = recorder.handle();
        metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
        msakit_server_kit::spawn_metrics_upkeep(
            metrics.clone(),
            tokio_util::sync::CancellationToken::new(),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .context("binding")?;
        let client = Client::builder()
            .registry_urls(args.registry.clone())
            .config_urls(args.config.clone())
            .build()
            .context("the SDK's client")?;
        let options = ConfigClientOptions::new(args.kind.name(), &["demo"]).cache_file(
            args.db
                .with_extension(format!("{}.config.json", args.instance)),
        );
        let config = client
            .config::<T>(options)
            .await
            .context("reading config")?;
        Ok(Self {
            args,
            client,
            config: Arc::new(config),
            listener,
            metrics,
            registration: None,
        })
    }

    /// Registers this instance, with `metadata`, and waits until the registry has it.
    pub(crate) async fn register(&mut self, metadata: &[(&str, String)]) -> anyhow::Result<()> {
        let port = self.listener.local_addr()?.port();
        let mut options = RegistrationOptions::new(
            self.args.kind.name(),
            &self.args.instance,
            "127.0.0.1",
            port,
        )
        .lease(self.args.lease);
        for (key, value) in metadata {
            options = options.metadata(*key, value.clone());
        }
        let registration = self.client.registration(options).context("registering")?;
        tokio::time::timeout(Duration::from_secs(10), registration.registered())
            .await
            .context("registering")?;
        self.registration = Some(registration);
        Ok(())
    }

    /// Says READY, then serves `routes` (behind the fault switches) plus `/health` and
    /// `/metrics` until SIGTERM or Ctrl-C, then deregisters.
    pub(crate) async fn serve(self, routes: Router) -> anyhow::Result<()> {
        // The orchestrator waits for this line.
        println!("READY {}", self.listener.local_addr()?.port());
        let metrics = self.metrics.clone();
        let routes = routes.layer(axum::middleware::from_fn_with_state(
            Arc::clone(&self.config),
            inject_faults::<T>,
        ));
        let app = routes
            .route(
                "/health",
                get(|| async { axum::Json(serde_json::json!({"status": "UP"})) }),
            )
            .route("/metrics", get(move || async move { metrics.render() }));
        let app = msakit_server_kit::traced(app);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(msakit_server_kit::shutdown_signal())
            .await?;
        if let Some(registration) = self.registration {
            registration.shutdown().await;
        }
        Ok(())
    }
}

/// The fault switches, applied before the service's own handler.
async fn inject_faults<T: ServiceConfig>(
    State(config): State<Arc<ConfigClient<T>>>,
    request: Request,
    next: Next,
) -> Response {
    let faults = config.current().faults().clone();
    if faults.hang {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        metrics::counter!("demo_injected_faults_total").increment(1);
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "injected_fault",
            "fault injected by the demo's config",
        )
        .into_response();
    }
    next.run(request).await
}

/// Exits when the orchestrator that started this process is gone (re-parented), so a killed
/// orchestrator never leaves services behind.
pub(crate) fn leave_with_parent() {
    let parent = std::os::unix::process::parent_id();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if std::os::unix::process::parent_id() != parent {
                tracing::warn!("the orchestrator is gone; leaving");
                std::process::exit(1);
            }
        }
    });
}

/// A service's SQLite database: WAL, so its instances (separate processes) share it; every
/// commit synced; a busy wait instead of an error when another instance holds the lock.
#[derive(Clone)]
pub(crate) struct Db(Arc<Mutex<rusqlite::Connection>>);

impl Db {
    pub(crate) fn open(path: &Path, schema: &str) -> anyhow::Result<Self> {
        let connection = rusqlite::Connection::open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(schema)?;
        Ok(Self(Arc::new(Mutex::new(connection))))
    }

    /// Runs `f` on the connection, off the async threads.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, ApiError> {
        let db = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let connection = db.lock().unwrap_or_else(|e| e.into_inner());
            f(&connection)
        })
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))
    }
}

/// A new order's id (its `Idempotency-Key`, 1 to 64 characters) and amount (1 to 1,000,000),
/// checked: the orchestrated and the choreographed order take the same request.
pub(crate) fn order_request(
    headers: &axum::http::HeaderMap,
    amount: i64,
) -> Result<String, ApiError> {
    let id = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_idempotency_key",
                "an order needs an Idempotency-Key header of 1 to 64 characters",
            )
        })?;
    if amount <= 0 || amount > 1_000_000 {
        return Err(ApiError::bad_request(
            "invalid_amount",
            "the amount must be between 1 and 1000000",
        ));
    }
    Ok(id.to_owned())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs one service instance until it is told to stop.
pub(crate) async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    if args.choreographed {
        return match args.kind {
            Kind::Order => crate::choreography::order::run(args).await,
            Kind::Payment => crate::choreography::payment::run(args).await,
            Kind::Delivery => crate::choreography::delivery::run(args).await,
        };
    }
    match args.kind {
        Kind::Order => order::run(args).await,
        Kind::Payment => payment::run(args).await,
        Kind::Delivery => delivery::run(args).await,
    }
}
