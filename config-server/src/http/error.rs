//! How the config server's errors become HTTP errors (the shared `ApiError`).

use axum::http::StatusCode;

use crate::cluster::ClusterError;
use crate::config_store::ConfigStoreError;
use crate::document::DocumentError;

pub(crate) use msakit_server_kit::ApiError;

impl From<ConfigStoreError> for ApiError {
    fn from(e: ConfigStoreError) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match &e {
            ConfigStoreError::Document(DocumentError::InvalidName(_)) => {
                ApiError::bad_request("invalid_name", e.to_string())
            }
            ConfigStoreError::Document(DocumentError::Syntax { .. }) => {
                ApiError::new(unprocessable, "syntax_error", e.to_string())
            }
            ConfigStoreError::Document(DocumentError::NotAMap) => {
                ApiError::new(unprocessable, "not_a_map", e.to_string())
            }
            ConfigStoreError::TooManyDocuments { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_documents",
                e.to_string(),
            ),
            ConfigStoreError::TooLarge(..) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "document_too_large",
                e.to_string(),
            ),
            ConfigStoreError::Schema(_) => {
                ApiError::new(unprocessable, "schema_violation", e.to_string())
            }
            ConfigStoreError::Secret(_) => {
                ApiError::new(unprocessable, "invalid_secret", e.to_string())
            }
            ConfigStoreError::InvalidSchema(_) => {
                ApiError::new(unprocessable, "invalid_schema", e.to_string())
            }
            ConfigStoreError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            ConfigStoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "version_conflict", e.to_string())
            }
            ConfigStoreError::NotCommitted(inner) => match inner.downcast_ref::<ClusterError>() {
                Some(cluster) => cluster.clone().into(),
                None => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_committed",
                    inner.to_string(),
                ),
            },
            ConfigStoreError::Storage(inner) => {
                tracing::error!(error = %inner, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the write could not be stored",
                )
            }
        }
    }
}

impl From<DocumentError> for ApiError {
    fn from(e: DocumentError) -> Self {
        ConfigStoreError::from(e).into()
    }
}
