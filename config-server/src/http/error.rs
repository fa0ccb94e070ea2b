//! The config server's one HTTP error type: `{"error": {"code", "message"}}` with the right
//! status; storage failures are a 500 that says nothing internal.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use msakit_api::error::ErrorBody;

use crate::document::DocumentError;
use crate::service::ServiceError;

/// An error response.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"msakit-config\", Bearer"),
            );
        }
        response
    }
}

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

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}
