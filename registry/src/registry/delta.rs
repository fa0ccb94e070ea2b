//! A delta read from the registry's change history: every instance changed in a window with its
//! last change (as it is now, or as it was when it left), the count of instances per status, and
//! whether the history covers the window — all under one read lock. Eureka's `/apps/delta` is
//! made of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{ChangeRecord, DepartedInstance, Extension, Registry, Service, to_wire};
use msakit_api::registry::Instance;

/// The changes of a window and the state they lead to, read under one lock, so that the status
/// counts describe the very state its entries lead to (a Eureka client recomputes its hash code
/// from them: a write between them would send every client to a full fetch).
#[derive(Debug)]
pub(crate) struct Delta {
    /// The registry's index when read.
    pub(crate) index: u64,
    /// Every instance changed in the window, with its last change, by service then id.
    pub(crate) entries: Vec<DeltaEntry>,
    /// Whether the history holds every change of the window: not when it overflowed within it,
    /// nor when a snapshot install emptied it within it. A client cannot be brought up to date
    /// by an incomplete delta.
    pub(crate) complete: bool,
    /// How many instances of the namespace have each effective status, by its wire name, in
    /// the names' order.
    pub(crate) status_counts: BTreeMap<&'static str, u64>,
}

/// The last change of one instance within a delta's window.
#[derive(Debug)]
pub(crate) enum DeltaEntry {
    /// It is registered: as it is now.
    Present {
        /// The instance now.
        instance: Box<Instance>,
        /// What a protocol adapter kept with it.
        extension: Option<Extension>,
    },
    /// It left: as it was then.
    Departed(Arc<DepartedInstance>),
}

impl Registry {
    /// The delta of `namespace` since `since_ms` (Unix milliseconds): each changed instance's
    /// last change, and the status counts and index, all under one read lock.
    pub(crate) fn delta(&self, namespace: &str, since_ms: u64) -> Delta {
        let state = self.read();
        let overflowed = state.history.len() >= self.history_len.max(1)
            && state.history.front().is_some_and(|c| c.at_ms >= since_ms);
        let complete = state.history_floor_ms < since_ms && !overflowed;
        let mut last: BTreeMap<(&str, &str), &ChangeRecord> = BTreeMap::new();
        for change in state
            .history
            .iter()
            .filter(|c| c.at_ms >= since_ms && c.namespace == namespace)
        {
            last.insert((change.service.as_str(), change.id.as_str()), change);
        }
        let services = state.namespaces.get(namespace);
        let entries = last
            .into_iter()
            .filter_map(|((service, id), change)| {
                let present = services
                    .and_then(|s| s.get(service))
                    .and_then(|s| s.instances.get(id));
                // An instance's last change says what it is now: present after an upsert,
                // gone after a removal (a registration after it would be a later change).
                match present {
                    Some(entry) => Some(DeltaEntry::Present {
                        instance: Box::new(to_wire(namespace, service, id, entry)),
                        extension: entry.registration.extension.clone(),
                    }),
                    None => change.departed.clone().map(DeltaEntry::Departed),
                }
            })
            .collect();
        Delta {
            index: state.index,
            entries,
            complete,
            status_counts: count_statuses(services),
        }
    }

    /// How many instances of `namespace` have each status (what Eureka's hash code counts).
    pub(crate) fn status_counts(&self, namespace: &str) -> BTreeMap<&'static str, u64> {
        count_statuses(self.read().namespaces.get(namespace))
    }
}

fn count_statuses(services: Option<&HashMap<String, Service>>) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for entry in services
        .into_iter()
        .flat_map(|s| s.values())
        .flat_map(|s| s.instances.values())
    {
        *counts
            .entry(entry.registration.status().as_str())
            .or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::super::tests::{registry, request};
    use crate::config::{RegistryConfig, WatchConfig};
    use crate::registry::RegistryWriter;
    use crate::registry::unix_ms;

    /// A delta whose window the history no longer covers says so: after a snapshot install
    /// emptied it, or when more changes than it keeps happened within the window.
    #[test]
    fn a_delta_knows_when_its_history_does_not_cover_the_window() {
        let r = registry();
        let window_start = unix_ms().saturating_sub(180_000);
        r.register("public", "a", "1", request(1)).unwrap();
        let delta = r.delta("public", window_start);
        assert!(delta.complete);
        assert_eq!(delta.entries.len(), 1);
        // A restart from storage: the changes just before it are gone with the old history.
        let restarted = registry();
        let dumped = r.dump();
        restarted.restore(dumped.instances, dumped.index);
        assert!(!restarted.delta("public", window_start).complete);
        // One with nothing to restore has nothing a client could be behind on.
        let empty = registry();
        empty.restore(Vec::new(), 0);
        assert!(empty.delta("public", window_start).complete);
        // A snapshot install.
        r.replace(r.dump());
        assert!(!r.delta("public", window_start).complete);
        assert!(r.delta("public", unix_ms() + 1).complete);

        let config = RegistryConfig {
            watch: WatchConfig {
                history: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        let small = RegistryWriter::new(&config, None);
        for port in 1..=4 {
            small.register("public", "a", "1", request(port)).unwrap();
        }
        assert!(!small.delta("public", window_start).complete);
    }
}
