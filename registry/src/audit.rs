//! The registry's audit log: operators' status overrides and deregistrations — who (which
//! token), from where, what, when. Kept in memory: the last 10,000 entries, numbered without
//! gaps since the registry started. Registrations and heartbeats are the instances' own business
//! and are not audited.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use msakit_api::audit::{AuditEntry, AuditPage};

/// Entries kept.
const CAPACITY: usize = 10_000;

/// Who made a request: set by the auth middleware (`token-N`, N the token's position in the
/// configuration, never the token; or `anonymous`).
#[derive(Debug, Clone)]
pub(crate) struct Actor(pub(crate) String);

/// The actor and client address of a request, for the audit log.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    actor: String,
    client: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Who {
            actor: parts
                .extensions
                .get::<Actor>()
                .map_or_else(|| "anonymous".to_owned(), |a| a.0.clone()),
            client: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        })
    }
}

/// The log.
#[derive(Debug, Default)]
pub(crate) struct AuditLog {
    entries: Mutex<(u64, VecDeque<AuditEntry>)>,
}

impl AuditLog {
    /// Records `action` on `target` by `who`.
    pub(crate) fn record(&self, who: &Who, action: &str, target: String, detail: String) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        tracing::info!(actor = %who.actor, client = ?who.client, action, %target, %detail, "audit");
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (last, entries) = &mut *guard;
        *last += 1;
        entries.push_back(AuditEntry {
            seq: *last,
            at_ms,
            actor: who.actor.clone(),
            client: who.client.clone(),
            action: action.to_owned(),
            target,
            detail,
        });
        if entries.len() > CAPACITY {
            entries.pop_front();
        }
    }

    /// Records an override set (or cleared, with `None`) on `target`.
    pub(crate) fn record_override(
        &self,
        who: &Who,
        target: String,
        status: Option<msakit_api::registry::InstanceStatus>,
    ) {
        match status {
            Some(status) => self.record(who, "override", target, status.as_str().to_owned()),
            None => self.record(who, "clear_override", target, String::new()),
        }
    }

    /// Up to `limit` entries after `since`, oldest first.
    pub(crate) fn page(&self, since: u64, limit: usize) -> AuditPage {
        let guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entries: Vec<AuditEntry> = guard
            .1
            .iter()
            .filter(|e| e.seq > since)
            .take(limit)
            .cloned()
            .collect();
        let next = entries.last().map_or(since, |e| e.seq);
        AuditPage { entries, next }
    }
}
