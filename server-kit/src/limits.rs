//! Limits that refuse work with a clear error, and the count of what each refused, for the
//! server's `/metrics` (`msakit_limit_rejections_total{limit=…}`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use crate::ApiError;

/// The limits a server enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Open connections.
    Connections,
    /// Watch streams of one client address.
    WatchersPerClient,
    /// Something the server stores per parent (documents per application, instances, …).
    Capacity,
}

impl Limit {
    const ALL: [Limit; 3] = [
        Limit::Connections,
        Limit::WatchersPerClient,
        Limit::Capacity,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Connections => "connections",
            Limit::WatchersPerClient => "watchers_per_client",
            Limit::Capacity => "capacity",
        }
    }
}

/// How often each limit refused something. Cheap to share.
#[derive(Debug, Default)]
pub struct Rejections {
    counts: [AtomicU64; 3],
}

impl Rejections {
    /// Counts one refusal.
    pub fn count(&self, limit: Limit) {
        let index = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(limit = limit.as_str(), "refused: limit reached");
    }

    /// Every limit with its count, for `/metrics`.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Limit::ALL
            .iter()
            .zip(&self.counts)
            .map(|(limit, count)| (limit.as_str(), count.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Open watch streams per client address, refusing one over `max` with 429.
#[derive(Debug, Clone)]
pub struct WatchersPerClient {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    rejections: Arc<Rejections>,
}

impl WatchersPerClient {
    /// At most `max` streams per address.
    pub fn new(max: usize, rejections: Arc<Rejections>) -> Self {
        Self {
            max,
            open: Arc::default(),
            rejections,
        }
    }

    /// A slot for one more stream of `client`, held for as long as the stream lives.
    pub fn admit(&self, client: IpAddr) -> Result<WatcherSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= self.max {
            drop(open);
            self.rejections.count(Limit::WatchersPerClient);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_watchers",
                format!(
                    "this client already has {} watch streams open, the most allowed; close one or watch several services on one stream",
                    self.max
                ),
            ));
        }
        *count += 1;
        Ok(WatcherSlot {
            client,
            open: Arc::clone(&self.open),
        })
    }
}

/// One admitted watch stream; gives its slot back when dropped.
#[derive(Debug)]
pub struct WatcherSlot {
    client: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_watchers_is_refused_until_one_closes() {
        let rejections = Arc::new(Rejections::default());
        let limit = WatchersPerClient::new(2, Arc::clone(&rejections));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = limit.admit(a).unwrap();
        let _second = limit.admit(a).unwrap();
        let refused = limit.admit(a).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let _other = limit.admit(b).expect("another client has slots of its own");
        drop(first);
        let _third = limit.admit(a).expect("a slot came back");
        assert_eq!(
            rejections.snapshot(),
            [
                ("connections", 0),
                ("watchers_per_client", 1),
                ("capacity", 0)
            ]
        );
    }
}
