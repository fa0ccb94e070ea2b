//! The saga's events: what each service publishes, on which topic, keyed by the order id.
//! `step` numbers an order's events on one topic, in the order they are published.

use msakit_events::EventType;
use serde::{Deserialize, Serialize};

/// Topic of order's events.
pub(crate) const ORDERS: &str = "orders";
/// Topic of payment's events.
pub(crate) const PAYMENTS: &str = "payments";
/// Topic of delivery's events.
pub(crate) const DELIVERIES: &str = "deliveries";

/// An order was accepted (order, step 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrderPlaced {
    pub(crate) order_id: String,
    pub(crate) amount: i64,
    pub(crate) step: i64,
}

/// Payment charged the order (payment, step 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PaymentCharged {
    pub(crate) order_id: String,
    pub(crate) amount: i64,
    pub(crate) step: i64,
}

/// Payment declined the order (payment, step 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PaymentFailed {
    pub(crate) order_id: String,
    pub(crate) reason: String,
    pub(crate) step: i64,
}

/// Payment refunded the charge after delivery failed (payment, step 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PaymentRefunded {
    pub(crate) order_id: String,
    pub(crate) amount: i64,
    pub(crate) step: i64,
}

/// Delivery scheduled the order (delivery, step 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeliveryScheduled {
    pub(crate) order_id: String,
    pub(crate) step: i64,
}

/// Delivery cannot deliver the order (delivery, step 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeliveryFailed {
    pub(crate) order_id: String,
    pub(crate) reason: String,
    pub(crate) step: i64,
}

macro_rules! event_types {
    ($($name:ident),*) => {$(
        impl EventType for $name {
            const TYPE: &'static str = stringify!($name);
        }
    )*};
}
event_types!(
    OrderPlaced,
    PaymentCharged,
    PaymentFailed,
    PaymentRefunded,
    DeliveryScheduled,
    DeliveryFailed
);
