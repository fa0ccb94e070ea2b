//! What travels: the [`Envelope`] every event is wrapped in (its id, topic, key, type, schema
//! version, source and trace context, with the payload as JSON), and the typed view a handler
//! gets, [`Event<T>`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::trace::TraceContext;

/// A kind of event: a serde type with a name and a schema version.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct OrderPlaced { order_id: String, amount: i64 }
///
/// impl msakit_events::EventType for OrderPlaced {
///     const TYPE: &'static str = "OrderPlaced";
/// }
/// ```
///
/// Raise [`SCHEMA_VERSION`](Self::SCHEMA_VERSION) when the payload changes in a way an older
/// consumer cannot read: a consumer refuses (dead-letters) an event newer than the type it was
/// built with, and reads older ones (give new fields `#[serde(default)]`).
pub trait EventType: Serialize + DeserializeOwned + Send + 'static {
    /// The event's name in the envelope (`"OrderPlaced"`).
    const TYPE: &'static str;
    /// The payload's schema version. Default 1.
    const SCHEMA_VERSION: u32 = 1;
}

/// One event as stored in the outbox, sent over the transport and kept in dead letters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique across every service and time: 128 random bits, hex. The inbox remembers it.
    pub id: String,
    /// The stream it belongs to (`"orders"`).
    pub topic: String,
    /// Events with the same key are delivered in the order they were committed.
    pub key: String,
    /// The [`EventType::TYPE`] of the payload.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The [`EventType::SCHEMA_VERSION`] it was written with.
    pub schema_version: u32,
    /// The service that published it.
    pub source: String,
    /// When it was published, milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    /// The W3C `traceparent` of the publishing span: a consumer's work joins the same trace.
    pub traceparent: String,
    /// The event itself.
    pub payload: serde_json::Value,
}

impl Envelope {
    pub(crate) fn new<T: EventType>(
        source: &str,
        topic: &str,
        key: &str,
        payload: &T,
        trace: TraceContext,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: new_event_id(),
            topic: topic.to_owned(),
            key: key.to_owned(),
            event_type: T::TYPE.to_owned(),
            schema_version: T::SCHEMA_VERSION,
            source: source.to_owned(),
            occurred_at_ms: crate::clock::now_ms(),
            traceparent: trace.to_traceparent(),
            payload: serde_json::to_value(payload)?,
        })
    }
}

/// 128 random bits as 32 hex digits.
fn new_event_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// An event as its handler sees it: the typed payload and the envelope's facts.
#[derive(Debug, Clone)]
pub struct Event<T> {
    /// The payload, read as `T`.
    pub payload: T,
    /// The event's id (what the inbox remembers).
    pub id: String,
    /// Its topic.
    pub topic: String,
    /// Its key.
    pub key: String,
    /// The service that published it.
    pub source: String,
    /// The schema version it was written with (at most `T::SCHEMA_VERSION`).
    pub schema_version: u32,
    /// When it was published, milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    /// The delivery attempt, from 1.
    pub attempt: u32,
    trace: TraceContext,
}

impl<T> Event<T> {
    pub(crate) fn new(payload: T, envelope: &Envelope, trace: TraceContext, attempt: u32) -> Self {
        Self {
            payload,
            id: envelope.id.clone(),
            topic: envelope.topic.clone(),
            key: envelope.key.clone(),
            source: envelope.source.clone(),
            schema_version: envelope.schema_version,
            occurred_at_ms: envelope.occurred_at_ms,
            attempt,
            trace,
        }
    }

    /// The trace context of this handling: the publisher's trace, a span of its own. Pass it to
    /// what the handler publishes ([`Publish::trace`](crate::Publish::trace)) or calls, and the
    /// trace spans the hop.
    pub fn trace(&self) -> TraceContext {
        self.trace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Placed {
        order: String,
    }
    impl EventType for Placed {
        const TYPE: &'static str = "Placed";
        const SCHEMA_VERSION: u32 = 3;
    }

    #[test]
    fn an_envelope_names_its_type_and_version_and_round_trips() {
        let trace = TraceContext::new_root();
        let envelope = Envelope::new(
            "order",
            "orders",
            "o-1",
            &Placed {
                order: "o-1".into(),
            },
            trace,
        )
        .unwrap();
        assert_eq!(envelope.event_type, "Placed");
        assert_eq!(envelope.schema_version, 3);
        assert_eq!(envelope.id.len(), 32);
        let json = serde_json::to_string(&envelope).unwrap();
        assert!(json.contains(r#""type":"Placed""#), "{json}");
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(
            TraceContext::parse(&back.traceparent).unwrap().trace_id(),
            trace.trace_id()
        );
    }

    #[test]
    fn event_ids_differ() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_event_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
