//! What the registry answers: service lists, a service's instances (filtered, or as a blocking
//! query's index), snapshots with the stream after them, the changes a resuming watcher missed,
//! and the views protocol adapters build theirs from.

use std::collections::BTreeMap;

use msakit_api::registry::{Instance, ServiceInstances, ServiceList, ServiceSummary, Snapshot};
use tokio::sync::{broadcast, watch};

use super::{Extension, InstanceFilter, MissedChanges, Registry, RegistryEvent, State, to_wire};

impl Registry {
    /// The names of the services of `namespace`, sorted.
    pub(crate) fn service_names(&self, namespace: &str) -> Vec<String> {
        let state = self.read();
        let mut names: Vec<String> = state
            .namespaces
            .get(namespace)
            .map(|services| services.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// What a protocol adapter kept with an instance's registration, if anything.
    pub(crate) fn extension(&self, namespace: &str, service: &str, id: &str) -> Option<Extension> {
        let state = self.read();
        let entry = state
            .namespaces
            .get(namespace)?
            .get(service)?
            .instances
            .get(id)?;
        entry.registration.extension.clone()
    }

    /// One service's instances, each with what a protocol adapter kept with it.
    pub(crate) fn service_with_extensions(
        &self,
        namespace: &str,
        service: &str,
    ) -> Vec<(Instance, Option<Extension>)> {
        let state = self.read();
        state
            .namespaces
            .get(namespace)
            .and_then(|services| services.get(service))
            .map(|s| {
                s.instances
                    .iter()
                    .map(|(id, entry)| {
                        (
                            to_wire(namespace, service, id, entry),
                            entry.registration.extension.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every instance of a namespace, each with what a protocol adapter kept with it, by
    /// service then id.
    pub(crate) fn namespace_with_extensions(
        &self,
        namespace: &str,
    ) -> Vec<(Instance, Option<Extension>)> {
        let state = self.read();
        let mut out = Vec::new();
        if let Some(services) = state.namespaces.get(namespace) {
            let mut names: Vec<&String> = services.keys().collect();
            names.sort();
            for name in names {
                for (id, entry) in &services[name].instances {
                    out.push((
                        to_wire(namespace, name, id, entry),
                        entry.registration.extension.clone(),
                    ));
                }
            }
        }
        out
    }

    /// Every instance that has a health check, and the stream of every change after that, taken
    /// together.
    pub(crate) fn checks_and_subscribe(
        &self,
    ) -> (Vec<Instance>, broadcast::Receiver<RegistryEvent>) {
        let state = self.read();
        let receiver = self.changes.subscribe();
        let mut checked = Vec::new();
        for (namespace, services) in &state.namespaces {
            for (service, s) in services {
                for (id, entry) in &s.instances {
                    if entry.registration.health_check.is_some() {
                        checked.push(to_wire(namespace, service, id, entry));
                    }
                }
            }
        }
        (checked, receiver)
    }

    /// Services of a namespace with their instance counts.
    pub fn services(&self, namespace: &str) -> ServiceList {
        let state = self.read();
        let services = state
            .namespaces
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, s)| !s.instances.is_empty())
            .map(|(name, service)| {
                let mut by_status = BTreeMap::new();
                for entry in service.instances.values() {
                    *by_status.entry(entry.registration.status()).or_insert(0) += 1;
                }
                ServiceSummary {
                    name: name.clone(),
                    instances: service.instances.len() as u64,
                    by_status,
                    index: service.index,
                }
            });
        let mut services: Vec<_> = services.collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        ServiceList {
            namespace: namespace.to_owned(),
            index: state.index,
            services,
        }
    }

    /// One service's instances, filtered. An unknown service is empty, with the registry's
    /// current index (so a blocking query on it waits for its first instance).
    pub fn service(
        &self,
        namespace: &str,
        service: &str,
        filter: &InstanceFilter,
    ) -> ServiceInstances {
        let state = self.read();
        self.service_locked(&state, namespace, service, filter)
    }

    pub(super) fn service_locked(
        &self,
        state: &State,
        namespace: &str,
        service: &str,
        filter: &InstanceFilter,
    ) -> ServiceInstances {
        let found = state.namespaces.get(namespace).and_then(|s| s.get(service));
        let instances = found
            .into_iter()
            .flat_map(|s| s.instances.iter())
            .filter(|(_, e)| filter.status.is_none_or(|st| e.registration.status() == st))
            .filter(|(_, e)| {
                filter
                    .zone
                    .as_deref()
                    .is_none_or(|z| e.registration.zone.as_deref() == Some(z))
            })
            .map(|(id, e)| to_wire(namespace, service, id, e))
            .collect();
        ServiceInstances {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            index: found.map_or(state.index, |s| s.index),
            instances,
        }
    }

    /// The index of a service's last change (the registry index for an unknown service).
    pub fn service_index(&self, namespace: &str, service: &str) -> u64 {
        let state = self.read();
        let index = state
            .namespaces
            .get(namespace)
            .and_then(|s| s.get(service))
            .map(|s| s.index);
        index.unwrap_or(0)
    }

    /// A receiver that is told every new registry index.
    pub fn index_updates(&self) -> watch::Receiver<u64> {
        self.index.subscribe()
    }

    /// A snapshot of the services `wanted` accepts, and the stream of every change after it,
    /// taken together so that nothing falls between them.
    pub fn snapshot_and_subscribe(
        &self,
        namespace: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> (Snapshot, broadcast::Receiver<RegistryEvent>) {
        let state = self.read();
        let receiver = self.changes.subscribe();
        let mut names: Vec<&String> = state
            .namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|s| s.iter())
            .filter(|(name, s)| wanted(name) && !s.instances.is_empty())
            .map(|(name, _)| name)
            .collect();
        names.sort();
        let services = names
            .into_iter()
            .map(|name| self.service_locked(&state, namespace, name, &InstanceFilter::default()))
            .collect();
        (
            Snapshot {
                index: state.index,
                services,
            },
            receiver,
        )
    }

    /// The changes after `index` still in the history, and the stream of every change after
    /// them; `None` when the history no longer reaches back that far.
    pub fn changes_since(&self, index: u64) -> Option<MissedChanges> {
        let state = self.read();
        let oldest = state.history.front().map_or(state.index + 1, |c| c.index);
        if index > state.index || index + 1 < oldest {
            return None;
        }
        let receiver = self.changes.subscribe();
        let missed = state
            .history
            .iter()
            .filter(|c| c.index > index)
            .cloned()
            .collect();
        Some((missed, receiver))
    }
}
