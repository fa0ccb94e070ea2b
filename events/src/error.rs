//! What can go wrong, for the caller ([`EventsError`]) and for a handler ([`HandlerError`]).

use std::error::Error as StdError;

/// A boxed error a handler may return.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Errors of the events API.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The database is neither SQLite nor PostgreSQL.
    #[error("unsupported database {0:?}: msakit-events uses SQLite or PostgreSQL")]
    UnsupportedDatabase(String),
    /// An event could not be written or read as JSON.
    #[error("event JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A topic, key or group name is empty, too long or has characters it may not.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// "topic", "key" or "consumer group".
        what: &'static str,
        /// The name given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An event is larger than [`MAX_ENVELOPE_BYTES`](crate::MAX_ENVELOPE_BYTES).
    #[error("event of {bytes} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Its size as JSON.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// This instance no longer holds the relay lease; another relays now.
    #[error("the relay lease was lost")]
    LeaseLost,
    /// A subscription for this group, topic and event type already exists.
    #[error("{group} already subscribes to {event_type} on {topic}")]
    AlreadySubscribed {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
        /// The event type.
        event_type: &'static str,
    },
    /// No dead letter has this group and event id.
    #[error("no dead letter {event_id} in group {group}")]
    NoSuchDeadLetter {
        /// The consumer group.
        group: String,
        /// The event id.
        event_id: String,
    },
    /// A dead letter cannot be replayed: this process has no handler for it.
    #[error("no handler in this process for {event_type} on {topic} in group {group}")]
    NoHandler {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
        /// The event type.
        event_type: String,
    },
    /// The replayed event failed again; it stays a dead letter.
    #[error("the replay failed again: {0}")]
    ReplayFailed(#[source] BoxError),
    /// [`EventsBuilder::transport`](crate::EventsBuilder::transport) was not called.
    #[error("no transport: call EventsBuilder::transport")]
    NoTransport,
    /// The SDK client for the direct transport could not be built.
    #[error("SDK client: {0}")]
    Client(#[from] msakit::BuildError),
    /// The Kafka client failed.
    #[cfg(feature = "kafka")]
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Why a handler did not apply an event. Everything the handler did in the transaction is
/// rolled back either way.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth another attempt (a busy database, a peer down): retried with backoff, then
    /// dead-lettered once the attempts are spent.
    #[error("{0}")]
    Transient(#[source] BoxError),
    /// Will fail every time (the payload breaks a rule): dead-lettered at once.
    #[error("{0}")]
    Permanent(#[source] BoxError),
}

impl HandlerError {
    /// A failure worth retrying.
    pub fn transient(error: impl Into<BoxError>) -> Self {
        HandlerError::Transient(error.into())
    }

    /// A failure that no retry will cure.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        HandlerError::Permanent(error.into())
    }

    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, HandlerError::Permanent(_))
    }
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        HandlerError::Transient(Box::new(error))
    }
}

impl From<BoxError> for HandlerError {
    fn from(error: BoxError) -> Self {
        HandlerError::Transient(error)
    }
}

/// Checks a topic, key or group name: 1 to 200 characters; topics and groups also only
/// letters, digits, `.`, `_` and `-` (what Kafka allows in a topic).
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), EventsError> {
    let invalid = |reason| EventsError::InvalidName {
        what,
        value: value.chars().take(64).collect(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if value.len() > 200 {
        return Err(invalid("must be at most 200 bytes"));
    }
    if what != "key"
        && !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid("may only have letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("topic", "orders.v1").is_ok());
        assert!(check_name("topic", "").is_err());
        assert!(check_name("topic", "a/b").is_err());
        assert!(check_name("key", "a/b c").is_ok());
        assert!(check_name("key", &"k".repeat(201)).is_err());
    }
}
