//! The audit log's wire types: who changed what, and when.

use serde::{Deserialize, Serialize};

/// One recorded write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When (Unix milliseconds).
    pub at_ms: u64,
    /// Who: the token's name (config server), `token-N` (registry), or `anonymous`.
    pub actor: String,
    /// From where: the client's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// What: `write`, `delete`, `rollback`, `schema`, `file`, `file_delete`, `override`,
    /// `clear_override`, `deregister`.
    pub action: String,
    /// On what: `application/profile/label@version`, `application/profile/label:path`,
    /// `service/instance`, …
    pub target: String,
    /// Why, or the value set: a commit message, an override's status.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Response of `GET /v1/audit?since=&limit=`: entries after `since`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// The entries.
    pub entries: Vec<AuditEntry>,
    /// Pass as `since` for the next page.
    pub next: u64,
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries after this one (default 0: from the start).
    #[serde(default)]
    pub since: u64,
    /// At most this many, 1 to 1,000 (default 100).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// The page size asked for; `None` when it is out of bounds.
    pub fn limit(&self) -> Option<usize> {
        match self.limit {
            None => Some(100),
            Some(n) if (1..=1000).contains(&n) => Some(n),
            Some(_) => None,
        }
    }
}
