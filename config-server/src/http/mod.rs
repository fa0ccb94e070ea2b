//! The config server's HTTP surface: the native `/v1` API, watches, secrets and the operational
//! endpoints.

mod auth;
mod cluster;
mod error;
mod native;
mod ops;
mod spring;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post, put};
use tokio_util::sync::CancellationToken;

use crate::config::ConfigServerConfig;
use crate::config_store::ConfigStore;
use crate::metrics::Metrics;

/// What every handler can reach: one shared [`AppParts`], so each copy a request takes (one per
/// layer and handler that has the state) is one reference count, not one per part.
pub(crate) type AppState = Arc<AppParts>;

/// Everything a handler can reach, behind [`AppState`].
#[derive(Debug)]
pub(crate) struct AppParts {
    pub(crate) configs: Arc<ConfigStore>,
    /// The path every change takes (and the cluster, in cluster mode).
    pub(crate) writes: crate::writes::Writes,
    /// The native directory, when one is served.
    pub(crate) native: Option<Arc<crate::native_dir::NativeDir>>,
    pub(crate) config: Arc<ConfigServerConfig>,
    pub(crate) metrics: Metrics,
    /// Open watch streams per client address.
    pub(crate) watchers: msakit_server_kit::WatchersPerClient,
    /// Cancelled at shutdown, to end watch streams.
    pub(crate) shutdown: CancellationToken,
    /// Read answers kept rendered until the store changes.
    pub(crate) answers: msakit_server_kit::KeptAnswers,
}

/// Spring Cloud Config's read endpoints, at the root or under `prefix`.
fn spring_routes(prefix: &str) -> Router<AppState> {
    let routes = Router::new()
        .route("/{one}", get(spring::one_segment))
        .route("/{one}/{two}", get(spring::two_segments))
        .route("/{one}/{two}/{three}", get(spring::three_segments))
        .route("/{one}/{two}/{three}/{*path}", get(spring::plain_file));
    if prefix.is_empty() {
        routes
    } else {
        Router::new().nest(prefix, routes.fallback(spring::unknown))
    }
}

/// Routes whose answers are the leader's in a cluster: writes, and reads (linearizable unless
/// the request asks for a stale one).
fn leader_routes(spring_prefix: &str) -> Router<AppState> {
    let doc = "/v1/config/{application}/{profile}/{label}";
    Router::new()
        .route(
            doc,
            put(native::put_document)
                .get(native::get_document)
                .delete(native::delete_document),
        )
        .route(&format!("{doc}/history"), get(native::history))
        .route(&format!("{doc}/rollback"), post(native::rollback))
        .route(
            "/v1/resolve/{application}/{profiles}/{label}",
            get(native::resolve),
        )
        .route("/v1/schemas/{application}", put(native::put_schema))
        .route(
            "/v1/files/{application}/{profile}/{label}/{*path}",
            put(native::put_file).delete(native::delete_file),
        )
        .route("/v1/audit", get(native::audit))
        .route("/v1/cluster/nodes", post(cluster::add_node))
        .route(
            "/v1/cluster/nodes/{node_id}",
            axum::routing::delete(cluster::remove_node),
        )
        .merge(spring_routes(spring_prefix))
}

/// Routes any node answers itself: watches (every node applies every change, in order), its
/// own cluster status, the stateless secrets helpers and operations.
fn local_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/watch/{application}/{profiles}/{label}",
            get(watch::stream),
        )
        .route("/v1/cluster", get(cluster::status))
        .route("/encrypt", post(native::encrypt))
        .route("/decrypt", post(native::decrypt))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
}

/// The whole router.
pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.config.max_document_bytes + 64 * 1024;
    let routing = msakit_raft::Routing {
        reads: msakit_raft::Reads::Linearizable,
        body_limit,
    };
    let cluster = state.writes.cluster();
    let routes =
        msakit_raft::leader_bound(leader_routes(&state.config.spring.prefix), cluster, routing)
            .merge(local_routes());
    let routes = match cluster {
        Some(cluster) => {
            routes.nest_service("/raft", msakit_raft::raft_routes(Arc::clone(cluster)))
        }
        None => routes,
    };
    routes
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.metrics.observer(),
            msakit_server_kit::time_requests,
        ))
        .with_state(state)
}

/// Reads each `/`-separated segment of `path` as every Spring endpoint might (label, file name,
/// profiles, application name) and fills placeholders in it, for the fuzz targets.
pub(crate) fn fuzz_spring_path(path: &str) {
    let properties: std::collections::BTreeMap<String, serde_json::Value> = [
        ("a".to_owned(), serde_json::json!("x")),
        ("a.b".to_owned(), serde_json::json!(1)),
    ]
    .into_iter()
    .collect();
    for segment in path.split('/') {
        let _ = spring::fuzz_segment(segment);
        let _ = native::profiles(segment);
        let _ = crate::document::check_name("application", segment);
        let _ = crate::document::check_label(&crate::document::normalize_label(segment));
    }
    let _ = spring::fuzz_placeholders(path, &properties);
}
