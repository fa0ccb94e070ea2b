//! The error body of every msakit server: `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `not_found` or `invalid_port`.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
}

impl ErrorBody {
    /// An error body with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// Documents, on every operation of `openapi`, the error answers any request can get (bad
/// query or body, wrong media type, missing or wrong token, a limit reached, …), each with an
/// [`ErrorBody`], unless the operation documents that status itself.
#[cfg(feature = "openapi")]
pub fn document_error_responses(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    const COMMON: [(&str, &str); 10] = [
        (
            "400",
            "The request is malformed: a bad query, header or body.",
        ),
        (
            "401",
            "A token is needed, or the one given is not accepted.",
        ),
        ("403", "The token may not do this."),
        ("404", "No such thing."),
        ("405", "The method is not allowed here."),
        ("413", "The body is larger than allowed."),
        ("415", "The body's media type is not accepted."),
        (
            "422",
            "The request is well-formed but its content is refused.",
        ),
        ("429", "Too many requests or streams from this client."),
        (
            "503",
            "The server cannot take this now (too many connections, or shutting down).",
        ),
    ];
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                        .build(),
                )
                .build(),
        )
    };
    for operation in crate::openapi::operations_mut(openapi) {
        for (status, description) in COMMON {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| error(description));
        }
    }
}
