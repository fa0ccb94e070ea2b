//! [`Events`]: one service's publishing and consuming, built once at start-up by
//! [`EventsBuilder`] over the service's own database and a [`Transport`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::EventsError;
use crate::database::Backend;
use crate::dead_letter::{self, DeadLetter};
use crate::direct::{self, DirectDeliveries, SUBSCRIPTIONS_METADATA};
use crate::envelope::EventType;
use crate::error::check_name;
use crate::handler::{ErasedHandler, Handler, TopicHandlers, Typed};
use crate::inbox::RetryPolicy;
use crate::outbox::Publish;
use crate::relay;
use crate::transport::{Sink, Transport};

/// Builds [`Events`]: `EventsBuilder::new(pool, "order").transport(…).start().await?`.
#[must_use = "nothing runs until start"]
pub struct EventsBuilder {
    pool: AnyPool,
    service: String,
    instance: Option<String>,
    transport: Option<Transport>,
    retry: RetryPolicy,
    retention: Duration,
    inbox_retention: Duration,
}

impl EventsBuilder {
    /// Events of `service` (the publisher's name in every envelope), kept in `pool`'s database
    /// (see [`connect`](crate::connect)).
    pub fn new(pool: AnyPool, service: impl Into<String>) -> Self {
        Self {
            pool,
            service: service.into(),
            instance: None,
            transport: None,
            retry: RetryPolicy::default(),
            retention: direct::DEFAULT_RETENTION,
            inbox_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// This instance's id: the relay lease's holder. Default a random one.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Where events go. Required.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// How failing handlers are retried before dead-lettering.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How long the direct transport keeps delivered events. Default 1 h.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long the inbox remembers an applied event (a redelivery after that would apply it
    /// again). Default 7 days; dead letters are kept until replayed.
    pub fn inbox_retention(mut self, retention: Duration) -> Self {
        self.inbox_retention = retention;
        self
    }

    /// Creates the tables if absent and starts the relay.
    pub async fn start(self) -> Result<Events, EventsError> {
        check_name("service", &self.service)?;
        let backend = Backend::of(&self.pool).await?;
        backend.install_schema(&self.pool).await?;
        let transport = self.transport.ok_or(EventsError::NoTransport)?;
        let sink = match &transport {
            Transport::Direct(client) => {
                Sink::Direct(Arc::new(DirectDeliveries::new(client, self.retention)?))
            }
            #[cfg(feature = "kafka")]
            Transport::Kafka(settings) => Sink::Kafka(crate::kafka::Producer::new(settings)?),
        };
        let instance = self
            .instance
            .unwrap_or_else(|| format!("{}-{:08x}", self.service, fastrand::u32(..)));
        let shared = Arc::new(Shared {
            pool: self.pool,
            service: self.service,
            retry: self.retry,
            transport,
            subscriptions: RwLock::new(HashMap::new()),
            relay_wake: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        shared.tasks.spawn(relay::run(
            shared.pool.clone(),
            instance,
            Arc::clone(&shared.relay_wake),
            sink,
            self.inbox_retention,
            shared.stop.clone(),
        ));
        Ok(Events { shared })
    }
}

/// One service's events: publish in its transactions, subscribe handlers, list and replay dead
/// letters. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    shared: Arc<Shared>,
}

/// What the relay, the consumers and the routes share.
pub(crate) struct Shared {
    pool: AnyPool,
    service: String,
    retry: RetryPolicy,
    transport: Transport,
    /// Handlers by (group, topic).
    subscriptions: RwLock<HashMap<(String, String), TopicHandlers>>,
    relay_wake: Arc<Notify>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Shared {
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The handlers of `group` on `topic`, as they are now.
    pub(crate) fn handlers(&self, group: &str, topic: &str) -> Option<TopicHandlers> {
        self.subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(group.to_owned(), topic.to_owned()))
            .cloned()
    }

    pub(crate) async fn replay(&self, group: &str, event_id: &str) -> Result<(), EventsError> {
        let letter = dead_letter::find(&self.pool, group, event_id).await?;
        let handlers = self
            .handlers(group, &letter.envelope.topic)
            .ok_or_else(|| EventsError::NoHandler {
                group: group.to_owned(),
                topic: letter.envelope.topic.clone(),
                event_type: letter.envelope.event_type.clone(),
            })?;
        dead_letter::replay(&self.pool, &handlers, &letter).await
    }
}

impl Events {
    /// Starts building.
    pub fn builder(pool: AnyPool, service: impl Into<String>) -> EventsBuilder {
        EventsBuilder::new(pool, service)
    }

    /// The service whose events these are.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The database.
    pub fn pool(&self) -> &AnyPool {
        &self.shared.pool
    }

    /// An event to publish on `topic` under `key` (events of one key arrive in commit order).
    pub fn event<'a, T: EventType>(
        &'a self,
        topic: &'a str,
        key: &'a str,
        payload: &'a T,
    ) -> Publish<'a, T> {
        Publish::new(self, topic, key, payload)
    }

    /// Writes an event through `db`, the caller's transaction: committed with the caller's
    /// changes or not at all. Returns its id. Same as `event(…).publish(db)`.
    pub async fn publish<T: EventType>(
        &self,
        db: &mut AnyConnection,
        topic: &str,
        key: &str,
        payload: &T,
    ) -> Result<String, EventsError> {
        self.event(topic, key, payload).publish(db).await
    }

    pub(crate) fn wake_relay(&self) {
        self.shared.relay_wake.notify_one();
    }

    /// Has `group` apply events of type `T` on `topic` with `handler`, each exactly once. A
    /// group is a set of instances among which each event is applied once: by convention the
    /// subscribing service's name. On the direct transport, subscribe before registering and
    /// register with [`registration_metadata`](Self::registration_metadata), and serve
    /// [`routes`](Self::routes).
    pub async fn subscribe<T: EventType, H: Handler<T>>(
        &self,
        group: &str,
        topic: &str,
        handler: H,
    ) -> Result<(), EventsError> {
        check_name("consumer group", group)?;
        check_name("topic", topic)?;
        let handler: Arc<dyn ErasedHandler> = Arc::new(Typed::<T, H>::new(handler));
        let first_of_topic = {
            let mut subscriptions = self
                .shared
                .subscriptions
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let key = (group.to_owned(), topic.to_owned());
            let first = !subscriptions.contains_key(&key);
            let handlers = subscriptions.entry(key).or_insert_with(|| TopicHandlers {
                group: group.to_owned(),
                by_type: HashMap::new(),
            });
            if handlers.by_type.contains_key(T::TYPE) {
                return Err(EventsError::AlreadySubscribed {
                    group: group.to_owned(),
                    topic: topic.to_owned(),
                    event_type: T::TYPE,
                });
            }
            handlers.by_type.insert(T::TYPE.to_owned(), handler);
            first
        };
        match &self.shared.transport {
            Transport::Direct(_) => {}
            #[cfg(feature = "kafka")]
            Transport::Kafka(settings) => {
                if first_of_topic {
                    crate::kafka::ensure_topic(settings, topic).await?;
                    let consumer = crate::kafka::Consumer::new(settings, group, topic)?;
                    self.shared.tasks.spawn(consumer.run(
                        Arc::clone(&self.shared),
                        group.to_owned(),
                        topic.to_owned(),
                        self.shared.stop.clone(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The registration metadata that tells the direct transport what this instance
    /// subscribes to: `("msakit.subscriptions", "topic=group,…")`.
    pub fn registration_metadata(&self) -> (&'static str, String) {
        let mut pairs: Vec<String> = self
            .shared
            .subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(|(group, topic)| format!("{topic}={group}"))
            .collect();
        pairs.sort();
        (SUBSCRIPTIONS_METADATA, pairs.join(","))
    }

    /// The routes to serve beside the service's own: the direct transport's delivery
    /// (`POST /msakit/events/{topic}/{group}`) and the dead letters
    /// (`GET /msakit/dead-letters`, `POST /msakit/dead-letters/{group}/{id}/replay`).
    pub fn routes(&self) -> axum::Router {
        direct::routes(Arc::clone(&self.shared))
            .merge(crate::admin::routes(Arc::clone(&self.shared)))
    }

    /// Dead letters, oldest first: of `group`, or of every group when `None`.
    pub async fn dead_letters(&self, group: Option<&str>) -> Result<Vec<DeadLetter>, EventsError> {
        dead_letter::list(&self.shared.pool, group, 1000).await
    }

    /// Runs a dead letter through its handler again (this process must subscribe to it): on
    /// success it is applied and no longer a dead letter; on failure it stays, with the error.
    pub async fn replay(&self, group: &str, event_id: &str) -> Result<(), EventsError> {
        self.shared.replay(group, event_id).await
    }

    /// Stops the relay and the consumers (committing consumed offsets), and waits for them.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}
