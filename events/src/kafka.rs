//! The Kafka transport (librdkafka through `rdkafka`). The relay produces with an idempotent
//! producer (`acks=all`, the event's key as the record key, so one key stays on one partition in
//! order) and removes a batch from the outbox only once every record of it is acknowledged.
//! Consumers join the group named by the subscription, apply what they receive through the inbox,
//! and store a record's offset only after the inbox transaction has committed; stored offsets are
//! committed every half second and on shutdown. A consumer killed mid-batch has its partitions'
//! uncommitted records delivered again, to itself or another member, and the inbox absorbs them.

use std::sync::Arc;

use futures_util::FutureExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use tokio_util::sync::CancellationToken;

use crate::EventsError;
use crate::envelope::Envelope;
use crate::events::Shared;
use crate::relay::OutboxRow;

/// Records a consumer applies in one batch at most.
const CONSUME_BATCH: usize = 256;

/// Where the brokers are, and any further librdkafka settings.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    bootstrap: String,
    partitions: i32,
    extra: Vec<(String, String)>,
}

impl KafkaSettings {
    /// Brokers at `bootstrap` (`host:port[,host:port…]`).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            partitions: 4,
            extra: Vec::new(),
        }
    }

    /// Partitions of the topics it creates (the unit of parallel consumption; one key always
    /// lands on one). Default 4.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// A further librdkafka setting (`security.protocol`, `sasl.*`, …), applied last.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// Creates `topic` with the settings' partitions if it does not exist yet.
pub(crate) async fn ensure_topic(settings: &KafkaSettings, topic: &str) -> Result<(), EventsError> {
    let admin: AdminClient<DefaultClientContext> = settings.finish(settings.config()).create()?;
    let new = NewTopic::new(topic, settings.partitions, TopicReplication::Fixed(-1));
    let results = admin.create_topics([&new], &AdminOptions::new()).await;
    // Dropping a client waits for librdkafka's threads: not on the runtime's.
    tokio::task::spawn_blocking(move || drop(admin));
    let results = results?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code).into()),
        }
    }
    Ok(())
}

/// The relay's producer.
pub(crate) struct Producer {
    /// Replaced when librdkafka reports a fatal error (an idempotent producer that lost its
    /// sequence can never send again).
    producer: std::sync::Mutex<FutureProducer>,
    settings: KafkaSettings,
    /// Topics known to exist.
    ensured: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Producer {
    pub(crate) fn new(settings: &KafkaSettings) -> Result<Self, EventsError> {
        Ok(Self {
            producer: std::sync::Mutex::new(Self::create(settings)?),
            settings: settings.clone(),
            ensured: std::sync::Mutex::default(),
        })
    }

    fn create(settings: &KafkaSettings) -> Result<FutureProducer, EventsError> {
        let mut config = settings.config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "60000");
        Ok(settings.finish(config).create()?)
    }

    /// Produces `rows` in order and waits until the brokers have every one; after a fatal error
    /// the next batch goes through a new producer.
    pub(crate) async fn send(&self, rows: &[OutboxRow]) -> Result<(), EventsError> {
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sent = self.send_with(&producer, rows).await;
        if sent.is_err()
            && let Some((code, reason)) = producer.client().fatal_error()
        {
            tracing::error!(?code, %reason, "kafka: the producer failed fatally; starting a new one");
            let fresh = Self::create(&self.settings)?;
            let old = std::mem::replace(
                &mut *self.producer.lock().unwrap_or_else(|e| e.into_inner()),
                fresh,
            );
            // Dropping a producer waits for librdkafka's threads: not on the runtime's.
            drop(producer);
            tokio::task::spawn_blocking(move || drop(old));
        }
        sent
    }

    async fn send_with(
        &self,
        producer: &FutureProducer,
        rows: &[OutboxRow],
    ) -> Result<(), EventsError> {
        let new_topics: std::collections::BTreeSet<&str> = {
            let ensured = self.ensured.lock().unwrap_or_else(|e| e.into_inner());
            rows.iter()
                .map(|row| row.topic.as_str())
                .filter(|topic| !ensured.contains(*topic))
                .collect()
        };
        for topic in new_topics {
            ensure_topic(&self.settings, topic).await?;
            self.ensured
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(topic.to_owned());
        }
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(rows.len());
        for row in rows {
            let mut record = FutureRecord::to(&row.topic)
                .key(&row.key)
                .payload(&row.envelope);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    // The local queue is full: let what is queued go out, in order, first.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        acknowledged(std::mem::take(&mut pending)).await?;
                    }
                    Err((error, _)) => return Err(error.into()),
                }
            }
        }
        acknowledged(pending).await
    }
}

async fn acknowledged(pending: Vec<DeliveryFuture>) -> Result<(), EventsError> {
    for delivery in pending {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(error.into()),
            Err(_) => return Err(KafkaError::Canceled.into()),
        }
    }
    Ok(())
}

/// One consumer group's member on one topic.
pub(crate) struct Consumer {
    consumer: StreamConsumer,
}

impl Consumer {
    pub(crate) fn new(
        settings: &KafkaSettings,
        group: &str,
        topic: &str,
    ) -> Result<Self, EventsError> {
        let mut config = settings.config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "500")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.partition.eof", "false");
        let consumer: StreamConsumer = settings.finish(config).create()?;
        consumer.subscribe(&[topic])?;
        Ok(Self { consumer })
    }

    /// Receives, applies and acknowledges until `stop`.
    pub(crate) async fn run(
        self,
        shared: Arc<Shared>,
        group: String,
        topic: String,
        stop: CancellationToken,
    ) {
        let mut failures = 0u32;
        let mut receive_errors = 0u64;
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => break,
                received = self.consumer.recv() => received,
            };
            let first = match first {
                Ok(message) => {
                    receive_errors = 0;
                    message.detach()
                }
                // librdkafka recovers by itself (reconnects, rejoins); these are its reports,
                // queued one per failed attempt, and must be drained, not waited on.
                Err(error) => {
                    receive_errors += 1;
                    if receive_errors.is_power_of_two() {
                        tracing::warn!(%error, %group, %topic, errors = receive_errors, "kafka: receive failed");
                    }
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < CONSUME_BATCH {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(message.detach()),
                    _ => break,
                }
            }
            let envelopes: Vec<Envelope> = batch
                .iter()
                .map(|message| read_envelope(&topic, message))
                .collect();
            // Applied, or retried until it is (the database back) or the consumer stops.
            loop {
                let Some(handlers) = shared.handlers(&group, &topic) else {
                    break;
                };
                match crate::inbox::apply(
                    shared.pool(),
                    &handlers,
                    shared.policy(),
                    &envelopes,
                    None,
                )
                .await
                {
                    Ok(_) => {
                        failures = 0;
                        for message in &batch {
                            if let Err(error) = self.consumer.store_offset(
                                message.topic(),
                                message.partition(),
                                message.offset(),
                            ) {
                                // The partition moved to another member: it starts from the
                                // committed offset and the inbox absorbs the repeat.
                                tracing::debug!(%error, "kafka: offset not stored");
                            }
                        }
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, %group, %topic, "kafka: batch not applied; retrying");
                        failures += 1;
                        if crate::pause::after_failure(failures, &stop).await {
                            break;
                        }
                    }
                }
            }
        }
        // A synchronous commit and the client's close block: not on the runtime's threads.
        let consumer = self.consumer;
        let closed = tokio::task::spawn_blocking(move || {
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(%error, "kafka: offsets not committed at shutdown");
            }
            drop(consumer);
        });
        let _ = closed.await;
    }
}

/// The envelope a record carries; a record that is not one becomes an envelope of type
/// `"unreadable"` (no handler has it, so it is acknowledged, and logged).
fn read_envelope(topic: &str, message: &rdkafka::message::OwnedMessage) -> Envelope {
    let payload = message.payload().unwrap_or_default();
    match serde_json::from_slice::<Envelope>(payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::error!(%error, topic, partition = message.partition(), offset = message.offset(),
                "kafka: a record that is not an msakit event; skipped");
            Envelope {
                id: format!("kafka-{topic}-{}-{}", message.partition(), message.offset()),
                topic: topic.to_owned(),
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                event_type: "unreadable".to_owned(),
                schema_version: 0,
                source: String::new(),
                occurred_at_ms: 0,
                traceparent: String::new(),
                payload: serde_json::Value::String(String::from_utf8_lossy(payload).into_owned()),
            }
        }
    }
}
