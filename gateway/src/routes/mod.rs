//! Routes: the set as written ([`spec`]), and the table compiled from it that requests are
//! matched against ([`RouteTable`]). A set that does not compile is refused whole.

mod canonical;
pub(crate) mod filter;
pub(crate) mod pattern;
pub(crate) mod predicate;
pub mod spec;
mod table;

pub(crate) use canonical::canonical_path;
pub(crate) use table::{Resources, Route, RouteTable};

/// Why a route set was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// A route's settings are wrong.
    #[error("route {route:?}: {reason}")]
    Invalid {
        /// The route's id.
        route: String,
        /// What is wrong.
        reason: String,
    },
    /// Two routes have one id.
    #[error("two routes have the id {0:?}")]
    DuplicateId(String),
    /// The API keys are wrong.
    #[error("api_keys: {0}")]
    ApiKeys(String),
}

impl RouteError {
    pub(crate) fn invalid(route: &str, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            route: route.to_owned(),
            reason: reason.to_string(),
        }
    }
}
