//! An audit entry as the log carries it and the store keeps it.

use msakit_api::audit::AuditEntry;
use serde::{Deserialize, Serialize};

use super::FormatVersion;

/// Who changed what, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditRecord {
    #[serde(default)]
    pub(crate) format_version: FormatVersion,
    /// Its number in the audit table (0 until stored).
    pub(crate) seq: u64,
    pub(crate) at_ms: u64,
    pub(crate) actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client: Option<String>,
    pub(crate) action: String,
    pub(crate) target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) detail: String,
}

impl From<AuditRecord> for AuditEntry {
    fn from(record: AuditRecord) -> Self {
        Self {
            seq: record.seq,
            at_ms: record.at_ms,
            actor: record.actor,
            client: record.client,
            action: record.action,
            target: record.target,
            detail: record.detail,
        }
    }
}
