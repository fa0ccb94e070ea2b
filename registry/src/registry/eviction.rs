//! Leases that ran out: the sweep, evictions (decided here on a single node, by the leader in a
//! cluster), a new leader's lease of grace, and self-preservation, which holds eviction back when
//! an abnormal share of leases runs out at once.

use std::sync::atomic::Ordering;

use msakit_api::registry::RemovalReason;

use super::{InstanceKey, Registry, RegistryWriter};

/// Whether an eviction looks at this node's own leases once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvictionCheck {
    /// A single node: a renewal may have come in since the sweep found the lease expired, so
    /// each lease is checked again.
    RecheckLease,
    /// A cluster: the leader decided, and every node applies its decision without looking at
    /// its own leases, so that all end up the same.
    LeaderDecided,
}

impl RegistryWriter {
    #[cfg(test)]
    /// Removes every instance whose lease has run out, unless self-preservation holds eviction
    /// back. Returns how many were removed.
    pub(crate) fn sweep(&self) -> usize {
        let due = self.due_for_eviction();
        self.evict(due, EvictionCheck::RecheckLease)
    }

    /// Removes `keys` as expired, each only while its registration is the one found expired
    /// (same index: a re-registration since then saves it) — and, as `check` says, only while
    /// still expired here. Returns how many were removed.
    pub(crate) fn evict(&self, keys: Vec<(InstanceKey, u64)>, check: EvictionCheck) -> usize {
        if keys.is_empty() {
            return 0;
        }
        let now = self.now_ms();
        let mut state = self.write();
        let mut removed = 0;
        for ((namespace, service, id), modify_index) in keys {
            let still_expired = state
                .namespaces
                .get(&namespace)
                .and_then(|s| s.get(&service))
                .and_then(|s| s.instances.get(&id))
                .is_some_and(|e| {
                    e.registration.modify_index == modify_index
                        && (check == EvictionCheck::LeaderDecided
                            || e.expires_at.load(Ordering::Acquire) <= now)
                });
            if still_expired
                && self.remove(
                    &mut state,
                    &namespace,
                    &service,
                    &id,
                    RemovalReason::Expired,
                )
            {
                removed += 1;
                tracing::info!(%namespace, %service, %id, "lease expired; instance evicted");
            }
        }
        self.counters
            .evictions
            .fetch_add(removed as u64, Ordering::Relaxed);
        let mut recent = self
            .recent_evictions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recent.extend(std::iter::repeat_n(now, removed));
        removed
    }

    /// Gives every instance one full lease from now (a new cluster leader, which has not seen
    /// the renewals its predecessor saw, must not evict live instances).
    pub(crate) fn grant_grace(&self) {
        let now = self.now_ms();
        let state = self.read();
        for services in state.namespaces.values() {
            for service in services.values() {
                for entry in service.instances.values() {
                    entry
                        .expires_at
                        .store(now + entry.registration.ttl_ms, Ordering::Release);
                }
            }
        }
        self.recent_evictions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Registry {
    /// The instances whose lease has run out, with the index of their registration as it was,
    /// unless self-preservation holds eviction back.
    pub(crate) fn due_for_eviction(&self) -> Vec<(InstanceKey, u64)> {
        let now = self.now_ms();
        let (expired, total) = {
            let state = self.read();
            let mut expired = Vec::new();
            for (namespace, services) in &state.namespaces {
                for (service, s) in services {
                    for (id, entry) in &s.instances {
                        if entry.expires_at.load(Ordering::Acquire) <= now {
                            let key = (namespace.clone(), service.clone(), id.clone());
                            expired.push((key, entry.registration.modify_index));
                        }
                    }
                }
            }
            (expired, state.instances)
        };
        if expired.is_empty() || self.holds_eviction(expired.len(), total, now) {
            return Vec::new();
        }
        expired
    }

    /// Self-preservation: whether this sweep must not evict. Lost leases are those expired now
    /// plus those evicted within the window; too large a share of all instances is abnormal.
    pub(super) fn holds_eviction(&self, expired: usize, total: usize, now_ms: u64) -> bool {
        let config = &self.self_preservation;
        let evicted = {
            let mut recent = self
                .recent_evictions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let horizon = now_ms.saturating_sub(config.window.as_millis() as u64);
            while recent.front().is_some_and(|&at| at < horizon) {
                recent.pop_front();
            }
            recent.len()
        };
        let population = total + evicted;
        let abnormal = config.enabled
            && population >= config.min_instances
            && expired > 0
            && (expired + evicted) as f64 > config.expiring_share * population as f64;
        let preserving = self.preserving.load(Ordering::Relaxed);
        if abnormal && !preserving {
            self.preserving.store(true, Ordering::Relaxed);
            self.preserving_since.store(now_ms, Ordering::Relaxed);
            tracing::warn!(
                expired,
                total,
                "self-preservation: an abnormal share of leases ran out at once; eviction paused"
            );
            return true;
        }
        if abnormal && preserving {
            let since = self.preserving_since.load(Ordering::Relaxed);
            if now_ms.saturating_sub(since) < config.max_pause.as_millis() as u64 {
                return true;
            }
            tracing::warn!(
                expired,
                total,
                "self-preservation: max pause reached; evicting"
            );
        } else if preserving {
            tracing::info!(expired, total, "self-preservation over: renewals recovered");
        }
        self.preserving.store(false, Ordering::Relaxed);
        false
    }
}
