//! How the registry's errors become HTTP errors (the shared `ApiError`).

use axum::http::StatusCode;

use crate::registry::RegistryError;

pub(crate) use msakit_server_kit::ApiError;

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownInstance { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_instance", e.to_string())
            }
            RegistryError::Invalid { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            RegistryError::Full(_) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "registry_full",
                e.to_string(),
            ),
        }
    }
}
