//! Discovery for `tower` stacks: a service's available instances as a
//! [`tower::discover::Discover`] stream, so `tower::balance` (or any balancer built on
//! `Discover`) can spread calls over them and follow the registry's changes as they are pushed.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;

use futures_util::Stream;
use msakit_api::registry::{Instance, Scheme};
use tower::discover::Change;

use crate::discovery::{Discovery, DiscoveryError};

/// What the stream yields: an instance (by id) to add, with the service `make` built for it, or
/// one to drop.
pub type InstanceChanges<S> =
    Pin<Box<dyn Stream<Item = Result<Change<String, S>, DiscoveryError>> + Send>>;

/// The available instances of `service` (UP, same zone first, as [`Discovery::available`]) as
/// `tower` discovery changes: every instance once at first, then an `Insert` for each new or
/// moved instance and a `Remove` for each that left, as the registry pushes them. `make` builds
/// the service that calls one instance.
///
/// The first poll asks the registry (or the cache) and fails if neither knows the service;
/// after that, the stream never waits for the registry: while it is down, nothing changes.
pub fn discover<S, F>(discovery: &Discovery, service: &str, make: F) -> InstanceChanges<S>
where
    S: Send + 'static,
    F: FnMut(&Instance) -> S + Send + 'static,
{
    let state = Follow {
        discovery: discovery.clone(),
        service: service.to_owned(),
        make,
        updates: discovery.updates(),
        known: HashMap::new(),
        pending: VecDeque::new(),
        started: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        |mut state| async move {
            loop {
                if let Some(change) = state.pending.pop_front() {
                    return Some((Ok(change), state));
                }
                if state.started && state.updates.changed().await.is_err() {
                    return None;
                }
                state.started = true;
                match state.discovery.available(&state.service).await {
                    Ok(instances) => state.diff(&instances),
                    Err(error) => return Some((Err(error), state)),
                }
            }
        },
    ))
}

/// The stream's state: what it has announced, and what it still has to.
struct Follow<S, F> {
    discovery: Discovery,
    service: String,
    make: F,
    updates: tokio::sync::watch::Receiver<u64>,
    /// Announced instances and the address each was announced with.
    known: HashMap<String, (String, u16, Scheme)>,
    pending: VecDeque<Change<String, S>>,
    started: bool,
}

impl<S, F: FnMut(&Instance) -> S> Follow<S, F> {
    fn diff(&mut self, instances: &[Instance]) {
        for instance in instances {
            let address = (instance.host.clone(), instance.port, instance.scheme);
            if self.known.get(&instance.id) != Some(&address) {
                self.known.insert(instance.id.clone(), address);
                self.pending
                    .push_back(Change::Insert(instance.id.clone(), (self.make)(instance)));
            }
        }
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|id| !instances.iter().any(|i| &i.id == *id))
            .cloned()
            .collect();
        for id in gone {
            self.known.remove(&id);
            self.pending.push_back(Change::Remove(id));
        }
    }
}
