//! # msakit-events
//!
//! Events between services that are never lost and never applied twice.
//!
//! - **Outbox**: [`Events::publish`] writes the event in the caller's own database transaction
//!   (SQLite or PostgreSQL, through sqlx): committed with the change it reports, or not at all.
//!   A relay hands committed events to the transport in commit order per key, then removes them;
//!   it survives crashes (an event may go twice, never zero times) and is woken by a publish
//!   instead of polling tightly.
//! - **Inbox**: a [`Handler`] runs inside a transaction that also records the event's id, so a
//!   redelivered event has no second effect. Failures are retried with backoff
//!   ([`RetryPolicy`]), then kept as [dead letters](DeadLetter) to list and replay.
//! - **Transports**: [Kafka](Transport::kafka) (idempotent producer, consumer groups, offsets
//!   stored only after the inbox commit) and [direct](Transport::direct) (no broker: delivered
//!   through the registry and the SDK's client to one instance of each subscribing service).
//!
//! ```ignore
//! let db = msakit_events::connect("sqlite:///var/lib/order/order.db?mode=rwc").await?;
//! let events = Events::builder(db.clone(), "order").transport(Transport::direct(&client)).start().await?;
//!
//! let mut tx = db.begin().await?;
//! sqlx::query("INSERT INTO orders …").execute(&mut *tx).await?;
//! events.publish(&mut tx, "orders", &order.id, &OrderPlaced { … }).await?;
//! tx.commit().await?;                                   // both or neither
//!
//! events.subscribe("payment", "orders", Charge).await?; // Charge: Handler<OrderPlaced>
//! ```

mod admin;
mod clock;
mod database;
mod dead_letter;
mod direct;
mod envelope;
mod error;
mod events;
mod handler;
mod inbox;
#[cfg(feature = "kafka")]
mod kafka;
mod outbox;
mod pause;
mod relay;
mod trace;
mod transport;

pub use database::connect;
pub use dead_letter::DeadLetter;
pub use direct::SUBSCRIPTIONS_METADATA;
pub use envelope::{Envelope, Event, EventType};
pub use error::{BoxError, EventsError, HandlerError};
pub use events::{Events, EventsBuilder};
pub use handler::Handler;
pub use inbox::RetryPolicy;
#[cfg(feature = "kafka")]
pub use kafka::KafkaSettings;
pub use outbox::{MAX_ENVELOPE_BYTES, Publish};
pub use sqlx::{AnyConnection, AnyPool};
pub use trace::TraceContext;
pub use transport::Transport;
