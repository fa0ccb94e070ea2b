//! The publisher's side: an event is a row written in the caller's own transaction, so it is
//! committed with the change it reports or not at all. The relay takes it from there.

use sqlx::AnyConnection;

use crate::EventsError;
use crate::clock::now_ms;
use crate::envelope::{Envelope, EventType};
use crate::error::check_name;
use crate::events::Events;
use crate::trace::TraceContext;

/// The largest event, as JSON (its envelope included): 1 MiB. Events carry facts, not files.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

/// One event on its way into the outbox: [`Events::event`], optionally
/// [`trace`](Self::trace), then [`publish`](Self::publish).
#[must_use = "an event is only written by publish"]
pub struct Publish<'a, T> {
    events: &'a Events,
    topic: &'a str,
    key: &'a str,
    payload: &'a T,
    trace: Option<TraceContext>,
}

impl<'a, T: EventType> Publish<'a, T> {
    pub(crate) fn new(events: &'a Events, topic: &'a str, key: &'a str, payload: &'a T) -> Self {
        Self {
            events,
            topic,
            key,
            payload,
            trace: None,
        }
    }

    /// Continues this trace (a handler's [`Event::trace`](crate::Event::trace), or a request's)
    /// instead of starting one.
    pub fn trace(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Writes the event through `db` — the caller's transaction — and wakes the relay. Returns
    /// the event's id.
    pub async fn publish(self, db: &mut AnyConnection) -> Result<String, EventsError> {
        check_name("topic", self.topic)?;
        check_name("key", self.key)?;
        let trace = self
            .trace
            .map_or_else(TraceContext::new_root, TraceContext::child);
        let envelope = Envelope::new(
            self.events.service(),
            self.topic,
            self.key,
            self.payload,
            trace,
        )?;
        let json = serde_json::to_string(&envelope)?;
        if json.len() > MAX_ENVELOPE_BYTES {
            return Err(EventsError::TooLarge {
                bytes: json.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        sqlx::query(
            "INSERT INTO msakit_outbox (event_id, topic, event_key, envelope, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&envelope.id)
        .bind(&envelope.topic)
        .bind(&envelope.key)
        .bind(json)
        .bind(now_ms())
        .execute(&mut *db)
        .await?;
        self.events.wake_relay();
        Ok(envelope.id)
    }
}
