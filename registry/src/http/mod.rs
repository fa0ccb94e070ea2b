//! The registry's HTTP surface: the native `/v1` API, watches, and the operational endpoints.

mod auth;
mod cluster;
mod error;

pub(crate) use error::ApiError;
mod native;
mod ops;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use tokio_util::sync::CancellationToken;

use crate::config::RegistryConfig;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// What every handler can reach: one shared [`AppParts`], so each copy a request takes (one per
/// layer and handler that has the state) is one reference count, not one per part.
pub(crate) type AppState = Arc<AppParts>;

/// Everything a handler can reach, behind [`AppState`].
#[derive(Debug)]
pub(crate) struct AppParts {
    pub(crate) registry: Arc<Registry>,
    /// The path every change takes (straight in, or through the cluster).
    pub(crate) writes: crate::writes::Writes,
    pub(crate) config: Arc<RegistryConfig>,
    pub(crate) metrics: Metrics,
    /// Operators' overrides and deregistrations.
    pub(crate) audit: Arc<crate::audit::AuditLog>,
    /// Open watch streams per client address.
    pub(crate) watchers: msakit_server_kit::WatchersPerClient,
    /// Cancelled at shutdown, to end watch streams that would otherwise never finish.
    pub(crate) shutdown: CancellationToken,
    /// Eureka's whole-registry documents, rendered.
    pub(crate) eureka_documents: Arc<crate::eureka::RenderedDocuments>,
    /// Service lookups kept rendered (see [`LOOKUPS_KEPT_FOR`]).
    pub(crate) lookups: msakit_server_kit::KeptAnswers,
}

/// A service lookup is sent again until the service changes, and for at most a second: the one
/// field that moves without a change, each instance's last renewal time, is then at most a
/// second old (Eureka's documents are kept the same way).
pub(crate) const LOOKUPS_KEPT_FOR: msakit_server_kit::KeptFor =
    msakit_server_kit::KeptFor::IndexUnmovedAtMost(std::time::Duration::from_secs(1));

/// Routes whose answers are the leader's in a cluster: writes go to it; reads are answered by
/// the node asked, flagged stale on a follower.
fn leader_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/services", get(native::list_services))
        .route("/v1/services/{service}", get(native::get_service))
        .route(
            "/v1/services/{service}/instances/{id}",
            put(native::register)
                .delete(native::deregister)
                .get(native::get_instance),
        )
        .route(
            "/v1/services/{service}/instances/{id}/status",
            put(native::set_status),
        )
        .route("/v1/watch", get(watch::stream))
        .route("/v1/audit", get(native::audit))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/nodes", post(cluster::add_node))
        .route("/v1/cluster/nodes/{node_id}", delete(cluster::remove_node))
        .merge(crate::eureka::leader_routes("/eureka"))
        .merge(crate::eureka::leader_routes("/eureka/v2"))
}

/// Routes any node answers itself: heartbeats (every node renews its own leases; a follower
/// hands them on to the leader in batches).
fn local_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/services/{service}/instances/{id}/heartbeat",
            put(native::heartbeat),
        )
        .merge(crate::eureka::local_routes("/eureka"))
        .merge(crate::eureka::local_routes("/eureka/v2"))
}

/// `routes` behind the token check — when tokens are configured. Without tokens every request
/// is let through as `anonymous` (what [`crate::audit::Who`] says when no token named the
/// caller), so no per-request check is put in the way.
fn guarded(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    if state.config.auth.tokens.is_empty() {
        routes
    } else {
        routes.layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
    }
}

/// The whole router.
pub(crate) fn router(state: AppState) -> Router {
    let routing = msakit_raft::Routing {
        reads: msakit_raft::Reads::Local,
        body_limit: state.config.limits.max_body_bytes,
    };
    let cluster = state.writes.cluster();
    let routes = msakit_raft::leader_bound(guarded(leader_routes(), &state), cluster, routing)
        .merge(guarded(local_routes(), &state))
        .route(
            "/v1/cluster/renewals",
            post(cluster::renewals).layer(DefaultBodyLimit::max(crate::cluster::BATCH_BODY_LIMIT)),
        );
    let routes = match cluster {
        Some(cluster) => {
            routes.nest_service("/raft", msakit_raft::raft_routes(Arc::clone(cluster)))
        }
        None => routes,
    };
    routes
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/", get(ops::dashboard))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.metrics.observer(),
            msakit_server_kit::time_requests,
        ))
        .with_state(state)
}

/// Parses a watch request's query and headers, for the fuzz targets.
pub(crate) fn fuzz_watch_request(query: Option<&str>, headers: &axum::http::HeaderMap) -> bool {
    watch::parses(query, headers)
}
