//! A registry on port 0, services that serve their events' routes and register, the event
//! type and the recording handler the tests use, and what they read back.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msakit::{Client, Registration, RegistrationOptions};
use msakit_events::{
    AnyConnection, AnyPool, Event, EventType, Events, HandlerError, RetryPolicy, Transport,
};
use msakit_resilience::retry::Backoff;
use msakit_server_kit::testing::TestServer;
use serde::{Deserialize, Serialize};
use sqlx::Row;

pub(crate) type Registry = TestServer<msakit_registry::ServerError>;

/// A registry with short leases.
pub(crate) async fn registry() -> Registry {
    let mut config = msakit_registry::RegistryConfig::default();
    config.lease.min_ttl = Duration::from_millis(100);
    config.sweep_interval = Duration::from_millis(20);
    config.shutdown_grace = Duration::from_secs(1);
    TestServer::start(|listener, stop| msakit_registry::run(listener, config, stop)).await
}

pub(crate) fn client(registry: &Registry) -> Client {
    Client::builder()
        .registry_url(&registry.url)
        .build()
        .unwrap()
}

/// A SQLite database file `name` in `dir`, with the tables the handlers write.
pub(crate) async fn database(dir: &Path, name: &str) -> AnyPool {
    database_at(&format!("sqlite://{}?mode=rwc", dir.join(name).display())).await
}

/// The database at `url` (SQLite or PostgreSQL), with the tables the handlers write.
pub(crate) async fn database_at(url: &str) -> AnyPool {
    let pool = msakit_events::connect(url).await.unwrap();
    let serial = if url.starts_with("sqlite:") {
        "INTEGER PRIMARY KEY AUTOINCREMENT"
    } else {
        "BIGSERIAL PRIMARY KEY"
    };
    for statement in [
        "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, n BIGINT NOT NULL)".to_owned(),
        // No unique key on the event: a second effect of one event would be a second row.
        format!(
            "CREATE TABLE IF NOT EXISTS applied (seq {serial}, grp TEXT NOT NULL, \
             event_id TEXT NOT NULL, event_key TEXT NOT NULL, n BIGINT NOT NULL, \
             attempt BIGINT NOT NULL, trace_id TEXT NOT NULL)"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

/// Retries fast, so tests of failures do not wait.
pub(crate) fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(attempts)
        .backoff(Backoff::Constant {
            delay: Duration::from_millis(5),
        })
}

/// The event the tests publish: the `n`th of its key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Placed {
    pub(crate) order: String,
    pub(crate) n: i64,
    #[serde(default)]
    pub(crate) poison: bool,
}

impl EventType for Placed {
    const TYPE: &'static str = "Placed";
}

/// Records every event it applies in `applied`, in the inbox's transaction; fails events as
/// told: `transient_failures[id]` times, and poison ones permanently while `cured` is false.
#[derive(Clone, Default)]
pub(crate) struct Record {
    pub(crate) group: String,
    pub(crate) transient_failures: Arc<Mutex<HashMap<String, u32>>>,
    pub(crate) cured: Arc<std::sync::atomic::AtomicBool>,
}

impl Record {
    pub(crate) fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            ..Self::default()
        }
    }
}

impl msakit_events::Handler<Placed> for Record {
    async fn handle(
        &self,
        db: &mut AnyConnection,
        event: Event<Placed>,
    ) -> Result<(), HandlerError> {
        sqlx::query(
            "INSERT INTO applied (grp, event_id, event_key, n, attempt, trace_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&self.group)
        .bind(&event.id)
        .bind(&event.key)
        .bind(event.payload.n)
        .bind(i64::from(event.attempt))
        .bind(format!("{:032x}", event.trace().trace_id()))
        .execute(&mut *db)
        .await?;
        if event.payload.poison && !self.cured.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HandlerError::permanent("poison"));
        }
        let mut failures = self.transient_failures.lock().unwrap();
        if let Some(left) = failures.get_mut(&event.id).filter(|left| **left > 0) {
            *left -= 1;
            return Err(HandlerError::transient("not yet"));
        }
        Ok(())
    }
}

/// Publishes `Placed { order: key, n }` on "orders" in a transaction that also writes the order,
/// and commits it (or rolls it back). Returns the event's id.
pub(crate) async fn place(events: &Events, key: &str, n: i64, commit: bool) -> String {
    place_on(events, "orders", key, n, commit).await
}

/// `place` on `topic`.
pub(crate) async fn place_on(
    events: &Events,
    topic: &str,
    key: &str,
    n: i64,
    commit: bool,
) -> String {
    let mut tx = events.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id, n) VALUES ($1, $2)")
        .bind(format!("{key}-{n}"))
        .bind(n)
        .execute(&mut *tx)
        .await
        .unwrap();
    let placed = Placed {
        order: key.to_owned(),
        n,
        poison: false,
    };
    let id = events.publish(&mut tx, topic, key, &placed).await.unwrap();
    if commit {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
    id
}

/// `(event_id, key, n)` of each effect applied in `pool` for `group`, in the order applied.
pub(crate) async fn applied(pool: &AnyPool, group: &str) -> Vec<(String, String, i64)> {
    sqlx::query("SELECT event_id, event_key, n FROM applied WHERE grp = $1 ORDER BY seq")
        .bind(group)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Asserts that every event in `expected` (id → (key, n)) was applied once and nothing else,
/// and that each key's events were applied in the order published.
pub(crate) fn assert_exactly_once_in_order(
    effects: &[(String, String, i64)],
    expected: &HashMap<String, (String, i64)>,
) {
    let mut seen = HashMap::new();
    let mut last_n: HashMap<&str, i64> = HashMap::new();
    for (id, key, n) in effects {
        assert!(
            expected.contains_key(id),
            "applied an event never committed: {id} {key} {n}"
        );
        *seen.entry(id.clone()).or_insert(0) += 1;
        if let Some(previous) = last_n.insert(key, *n) {
            assert!(*n > previous, "key {key}: {n} applied after {previous}");
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    assert_eq!(
        seen.len(),
        expected.len(),
        "events applied of those committed"
    );
}

/// A service instance: its events' routes on a loopback port, registered with what it
/// subscribes to.
pub(crate) struct Instance {
    pub(crate) url: String,
    registration: Option<Registration>,
    server: tokio::task::JoinHandle<()>,
}

impl Instance {
    pub(crate) async fn serve(client: &Client, service: &str, id: &str, events: &Events) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = events.routes();
        let server = tokio::spawn(async move {
            axum::serve(listener, routes).await.unwrap();
        });
        let (key, value) = events.registration_metadata();
        let registration = client
            .registration(
                RegistrationOptions::new(service, id, "127.0.0.1", port)
                    .lease(Duration::from_secs(2))
                    .metadata(key, value),
            )
            .unwrap();
        registration.registered().await;
        Self {
            url: format!("http://127.0.0.1:{port}"),
            registration: Some(registration),
            server,
        }
    }

    /// Leaves the registry and stops serving.
    pub(crate) async fn stop(mut self) {
        if let Some(registration) = self.registration.take() {
            registration.shutdown().await;
        }
        self.server.abort();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Events of `service` on `pool` over the direct transport.
pub(crate) async fn direct_events(
    client: &Client,
    pool: &AnyPool,
    service: &str,
    instance: &str,
    retry: RetryPolicy,
) -> Events {
    Events::builder(pool.clone(), service)
        .instance(instance)
        .transport(Transport::direct(client))
        .retry(retry)
        .start()
        .await
        .unwrap()
}
