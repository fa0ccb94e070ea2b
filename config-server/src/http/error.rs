//! How the config server's errors become HTTP errors (the shared `ApiError`).

use axum::http::StatusCode;

use crate::document::DocumentError;
use crate::service::ServiceError;

pub(crate) use msakit_server_kit::ApiError;

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match &e {
            ServiceError::Document(DocumentError::InvalidName(_)) => {
                ApiError::bad_request("invalid_name", e.to_string())
            }
            ServiceError::Document(DocumentError::Syntax { .. }) => {
                ApiError::new(unprocessable, "syntax_error", e.to_string())
            }
            ServiceError::Document(DocumentError::NotAMap) => {
                ApiError::new(unprocessable, "not_a_map", e.to_string())
            }
            ServiceError::TooManyDocuments { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_documents",
                e.to_string(),
            ),
            ServiceError::TooLarge(..) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "document_too_large",
                e.to_string(),
            ),
            ServiceError::Schema(_) => {
                ApiError::new(unprocessable, "schema_violation", e.to_string())
            }
            ServiceError::Secret(_) => {
                ApiError::new(unprocessable, "invalid_secret", e.to_string())
            }
            ServiceError::InvalidSchema(_) => {
                ApiError::new(unprocessable, "invalid_schema", e.to_string())
            }
            ServiceError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            ServiceError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "version_conflict", e.to_string())
            }
            ServiceError::Cluster(inner) => inner.clone().into(),
            ServiceError::Store(inner) => {
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
        ServiceError::from(e).into()
    }
}
