//! What a consumer writes: a [`Handler`] of one event type, run inside the inbox's transaction;
//! and how the subscriptions of one consumer group on one topic dispatch by event type.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::AnyConnection;

use crate::envelope::{Envelope, Event, EventType};
use crate::error::HandlerError;
use crate::trace::TraceContext;

/// Applies one type of event. `db` is inside the transaction that also records the event in the
/// inbox: write the event's effects through it and they happen exactly once; return an error
/// and none of them happen.
///
/// ```ignore
/// struct Charge;
/// impl Handler<OrderPlaced> for Charge {
///     async fn handle(&self, db: &mut AnyConnection, event: Event<OrderPlaced>) -> Result<(), HandlerError> {
///         sqlx::query("INSERT INTO charges (order_id, amount) VALUES ($1, $2)")
///             .bind(&event.payload.order_id).bind(event.payload.amount)
///             .execute(&mut *db).await?;
///         Ok(())
///     }
/// }
/// ```
pub trait Handler<T: EventType>: Send + Sync + 'static {
    /// Applies `event` through `db`.
    fn handle(
        &self,
        db: &mut AnyConnection,
        event: Event<T>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

pub(crate) type HandleFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// A handler with its event type erased: reads the payload, refuses a newer schema.
pub(crate) trait ErasedHandler: Send + Sync {
    fn handle<'a>(
        &'a self,
        db: &'a mut AnyConnection,
        envelope: &'a Envelope,
        attempt: u32,
    ) -> HandleFuture<'a>;
}

pub(crate) struct Typed<T, H> {
    handler: H,
    event: PhantomData<fn() -> T>,
}

impl<T, H> Typed<T, H> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            event: PhantomData,
        }
    }
}

impl<T: EventType, H: Handler<T>> ErasedHandler for Typed<T, H> {
    fn handle<'a>(
        &'a self,
        db: &'a mut AnyConnection,
        envelope: &'a Envelope,
        attempt: u32,
    ) -> HandleFuture<'a> {
        Box::pin(async move {
            if envelope.schema_version > T::SCHEMA_VERSION {
                return Err(HandlerError::permanent(format!(
                    "{} schema version {} is newer than this build reads ({})",
                    T::TYPE,
                    envelope.schema_version,
                    T::SCHEMA_VERSION
                )));
            }
            let payload: T = serde_json::from_value(envelope.payload.clone())
                .map_err(|e| HandlerError::permanent(format!("{} payload: {e}", T::TYPE)))?;
            let trace = TraceContext::parse(&envelope.traceparent)
                .map_or_else(TraceContext::new_root, TraceContext::child);
            let span = tracing::info_span!("event",
                topic = %envelope.topic, key = %envelope.key, r#type = T::TYPE, id = %envelope.id,
                attempt, traceparent = %trace.to_traceparent());
            tracing::Instrument::instrument(
                self.handler
                    .handle(db, Event::new(payload, envelope, trace, attempt)),
                span,
            )
            .await
        })
    }
}

/// The handlers of one consumer group on one topic, by event type. Events of a type the group
/// has no handler for are acknowledged and skipped.
#[derive(Clone)]
pub(crate) struct TopicHandlers {
    pub(crate) group: String,
    pub(crate) by_type: HashMap<String, Arc<dyn ErasedHandler>>,
}

impl TopicHandlers {
    pub(crate) fn for_event(&self, envelope: &Envelope) -> Option<&Arc<dyn ErasedHandler>> {
        self.by_type.get(&envelope.event_type)
    }
}
