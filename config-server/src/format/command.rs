//! A change to the config state as the Raft log holds it, and the snapshot nodes send each other.

use serde::{Deserialize, Serialize};

use super::{AuditRecord, FormatVersion, StoredVersion};
use crate::document::DocKey;
use crate::storage::Dump;

/// A document version proposed for commit: everything but `version` and `index`, which the
/// commit decides (in log order, the same on every node). Its format version is its stored
/// version's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Proposed {
    pub(crate) key: DocKey,
    pub(crate) stored: StoredVersion,
    pub(crate) if_match: Option<u64>,
}

/// A change to the config state: what a single node commits, and what a cluster replicates as
/// one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Command {
    /// New versions of documents (a group commit).
    Versions(Vec<Proposed>),
    /// An application's JSON Schema (already checked to be one).
    Schema {
        #[serde(default)]
        format_version: FormatVersion,
        /// The application.
        application: String,
        /// The schema, as JSON text.
        schema: String,
        /// Its audit entry.
        audit: AuditRecord,
    },
    /// A plain-text file stored (`Some`) or removed (`None`).
    File {
        #[serde(default)]
        format_version: FormatVersion,
        /// The document's storage key.
        doc: String,
        /// The file's path.
        path: String,
        /// Its content.
        content: Option<String>,
        /// Its audit entry.
        audit: AuditRecord,
    },
}

/// A snapshot as sent between nodes and kept: every row of the config state, each row in its
/// own record's format.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    #[serde(default)]
    pub(crate) format_version: FormatVersion,
    pub(crate) dump: Dump,
}
