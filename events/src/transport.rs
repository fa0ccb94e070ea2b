//! How events leave the database: [`Transport`] as the user chooses it, and the relay's
//! [`Sink`], which hands a batch of outbox rows over and runs what only the relay's holder may
//! (the direct transport's deliveries).

use std::sync::Arc;

use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::EventsError;
use crate::direct::{self, DirectDeliveries};
use crate::relay::OutboxRow;

/// Where events go.
#[derive(Clone)]
#[non_exhaustive]
pub enum Transport {
    /// Delivered straight to one instance of each subscribing service, found through the
    /// registry and called with the SDK's balanced, retried client: the embedded default, no
    /// broker. Events are kept in this database's log until every known subscriber has them.
    Direct(msakit::Client),
    /// Published to Kafka (idempotent producer, key = the event's key); consumers in groups.
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::KafkaSettings),
}

impl Transport {
    /// The direct transport through `client`'s registry.
    pub fn direct(client: &msakit::Client) -> Self {
        Transport::Direct(client.clone())
    }

    /// Kafka at `bootstrap` (`host:port[,host:port…]`).
    #[cfg(feature = "kafka")]
    pub fn kafka(bootstrap: impl Into<String>) -> Self {
        Transport::Kafka(crate::kafka::KafkaSettings::new(bootstrap))
    }
}

/// The relay's end of a transport.
pub(crate) enum Sink {
    Direct(Arc<DirectDeliveries>),
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::Producer),
}

impl Sink {
    /// Hands `rows` over and removes them from the outbox; on error nothing is lost (some may
    /// go twice).
    pub(crate) async fn send(
        &self,
        pool: &AnyPool,
        holder: &str,
        rows: &[OutboxRow],
    ) -> Result<(), EventsError> {
        match self {
            Sink::Direct(deliveries) => direct::append(pool, holder, rows, deliveries).await,
            #[cfg(feature = "kafka")]
            Sink::Kafka(producer) => {
                producer.send(rows).await?;
                crate::relay::delete_relayed(pool, rows).await
            }
        }
    }

    /// Starts what runs while the lease is held; the tracker is closed and waits for them.
    pub(crate) fn start_duties(&self, pool: &AnyPool, held: CancellationToken) -> TaskTracker {
        let tracker = TaskTracker::new();
        if let Sink::Direct(deliveries) = self {
            tracker.spawn(direct::deliver_while(
                Arc::clone(deliveries),
                pool.clone(),
                held,
                tracker.clone(),
            ));
        }
        tracker.close();
        tracker
    }
}
