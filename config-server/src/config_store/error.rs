//! Why an operation on the config store was refused or failed.

use crate::document::DocumentError;
use crate::storage::StorageError;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigStoreError {
    /// A name or the document is invalid.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The document is larger than allowed.
    #[error("the document has {0} bytes, more than the {1} allowed")]
    TooLarge(usize, usize),
    /// The application's JSON Schema refuses the document.
    #[error("{0}")]
    Schema(String),
    /// A `{cipher}` value cannot be decrypted (or no key is configured).
    #[error("{0}")]
    Secret(String),
    /// The schema itself is not a valid JSON Schema.
    #[error("{0}")]
    InvalidSchema(String),
    /// No such document or version.
    #[error("{0}")]
    NotFound(String),
    /// `If-Match` named a version that is no longer the newest.
    #[error("the document is at version {current}, not {expected}")]
    Conflict {
        /// The version the writer expected.
        expected: u64,
        /// The newest version.
        current: u64,
    },
    /// Creating the document would give its application more documents than allowed.
    #[error("application {application} already has {max} documents, the most allowed")]
    TooManyDocuments {
        /// The application.
        application: String,
        /// The limit.
        max: usize,
    },
    /// Storage failed; nothing was written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The write path could not commit it (in a cluster: no quorum, or this node cannot tell);
    /// what the path said, shared by every writer of the batch.
    #[error(transparent)]
    NotCommitted(std::sync::Arc<dyn std::error::Error + Send + Sync>),
}

/// Why a proposed version was not committed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum Refused {
    /// `If-Match` named a version that is no longer the newest.
    Conflict {
        /// Expected.
        expected: u64,
        /// Newest.
        current: u64,
    },
    /// The application has as many documents as allowed.
    TooManyDocuments {
        /// The application.
        application: String,
        /// The limit.
        max: usize,
    },
}

impl From<Refused> for ConfigStoreError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Conflict { expected, current } => {
                ConfigStoreError::Conflict { expected, current }
            }
            Refused::TooManyDocuments { application, max } => {
                ConfigStoreError::TooManyDocuments { application, max }
            }
        }
    }
}
