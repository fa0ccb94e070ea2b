//! The service's own database, where the outbox, the inbox, the dead letters and the direct
//! transport's log live beside the service's tables: SQLite (embedded) or PostgreSQL, through
//! sqlx's `Any` driver so one API serves both. Placeholders are `$1…` (both engines read them).

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::EventsError;

/// Opens a pool on `url` (`sqlite:///path/to/db?mode=rwc`, `postgres://user@host/db`), ready
/// for [`Events`](crate::Events): SQLite in WAL mode (so several processes share the file, each
/// commit durable), a busy wait of 10 s instead of an error when another process writes.
pub async fn connect(url: &str) -> Result<AnyPool, EventsError> {
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(url)?;
    let sqlite = url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { 4 } else { 16 })
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |connection, _| {
            Box::pin(async move {
                if sqlite {
                    connection.execute("PRAGMA busy_timeout = 10000").await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    if sqlite {
        pool.execute("PRAGMA journal_mode = WAL").await?;
    }
    Ok(pool)
}

/// Which engine a pool talks to: the few statements that differ (keys that number
/// themselves) are written for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) async fn of(pool: &AnyPool) -> Result<Self, EventsError> {
        let connection = pool.acquire().await?;
        match connection.backend_name() {
            "SQLite" => Ok(Backend::Sqlite),
            "PostgreSQL" => Ok(Backend::Postgres),
            other => Err(EventsError::UnsupportedDatabase(other.to_owned())),
        }
    }

    /// A primary key numbered by the database, in commit order for one writer.
    fn serial_key(self) -> &'static str {
        match self {
            Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        }
    }

    /// Creates the tables the events need, if absent.
    pub(crate) async fn install_schema(self, pool: &AnyPool) -> Result<(), EventsError> {
        let serial = self.serial_key();
        let statements = [
            // Events committed with the service's own changes, not yet handed to the transport.
            format!(
                "CREATE TABLE IF NOT EXISTS msakit_outbox (
                    id {serial},
                    event_id TEXT NOT NULL,
                    topic TEXT NOT NULL,
                    event_key TEXT NOT NULL,
                    envelope TEXT NOT NULL,
                    created_at_ms BIGINT NOT NULL)"
            ),
            // Which relay may publish: one at a time per database, by lease.
            "CREATE TABLE IF NOT EXISTS msakit_relay_lease (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at_ms BIGINT NOT NULL)"
                .to_owned(),
            // Events a consumer group has applied (or dead-lettered): never applied twice.
            "CREATE TABLE IF NOT EXISTS msakit_inbox (
                consumer_group TEXT NOT NULL,
                event_id TEXT NOT NULL,
                handled_at_ms BIGINT NOT NULL,
                PRIMARY KEY (consumer_group, event_id))"
                .to_owned(),
            // Events that failed every attempt, for an operator to list and replay.
            "CREATE TABLE IF NOT EXISTS msakit_dead_letter (
                consumer_group TEXT NOT NULL,
                event_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                event_key TEXT NOT NULL,
                envelope TEXT NOT NULL,
                error TEXT NOT NULL,
                attempts BIGINT NOT NULL,
                failed_at_ms BIGINT NOT NULL,
                PRIMARY KEY (consumer_group, event_id))"
                .to_owned(),
            // The direct transport's log: relayed events in relay order, kept until every known
            // group has them and the retention has passed.
            format!(
                "CREATE TABLE IF NOT EXISTS msakit_event_log (
                    seq {serial},
                    topic TEXT NOT NULL,
                    event_key TEXT NOT NULL,
                    envelope TEXT NOT NULL,
                    appended_at_ms BIGINT NOT NULL)"
            ),
            "CREATE INDEX IF NOT EXISTS msakit_event_log_topic ON msakit_event_log (topic, seq)"
                .to_owned(),
            // The consumer groups the direct transport owes events to, and how far each has got.
            "CREATE TABLE IF NOT EXISTS msakit_direct_group (
                topic TEXT NOT NULL,
                consumer_group TEXT NOT NULL,
                service TEXT NOT NULL,
                delivered_seq BIGINT NOT NULL,
                PRIMARY KEY (topic, consumer_group))"
                .to_owned(),
        ];
        for statement in statements {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(pool)
                .await?;
        }
        Ok(())
    }
}
