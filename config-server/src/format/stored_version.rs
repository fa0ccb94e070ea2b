//! One version of a document as the store keeps it and a log entry proposes it.

use msakit_api::config::Format;
use serde::{Deserialize, Serialize};

use super::FormatVersion;

/// One version of a document as stored. Secrets stay `{cipher}…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredVersion {
    #[serde(default)]
    pub(crate) format_version: FormatVersion,
    pub(crate) version: u64,
    /// The document's text format (not the record's).
    #[serde(with = "super::document_format")]
    pub(crate) format: Format,
    pub(crate) content: String,
    pub(crate) author: String,
    pub(crate) message: String,
    pub(crate) created_at_ms: u64,
    pub(crate) deleted: bool,
    pub(crate) rolled_back_to: Option<u64>,
    pub(crate) index: u64,
}
