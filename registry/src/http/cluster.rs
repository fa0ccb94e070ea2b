//! Cluster mode over HTTP: the admin API (status, add and remove nodes), the renewals followers
//! hand on to the leader, and the middleware that sends writes to the leader while any node
//! answers reads, watches and heartbeats. Raft's own messages are `msakit_raft::raft_routes`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use msakit_api::error::ErrorBody;

use super::AppState;
use super::error::ApiError;
use crate::cluster::{ClusterStatus, NodeId, RenewalBatch};

fn not_clustered() -> ApiError {
    msakit_raft::not_clustered("--node-id, --peers and --data-dir")
}

/// Whether `path` is a heartbeat: `/v1/services/{service}/instances/{id}/heartbeat`, or
/// Eureka's `/apps/{app}/{id}` (under `/eureka` or `/eureka/v2`).
fn heartbeat(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    matches!(
        segments.as_slice(),
        ["v1", "services", _, "instances", _, "heartbeat"]
            | ["eureka", "apps", _, _]
            | ["eureka", "v2", "apps", _, _]
    )
}

/// Served by whichever node is asked: operations, Raft, watches, renewals and heartbeats.
fn answered_here(method: &Method, path: &str) -> bool {
    matches!(path, "/health" | "/metrics" | "/openapi.json" | "/")
        || path.starts_with("/raft/")
        || path == "/v1/cluster/renewals"
        || (method == Method::PUT && heartbeat(path))
}

/// Sends writes to the leader (a no-op on a single node); reads are answered here, flagged
/// stale on a follower.
pub(crate) async fn route(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = state.writes.cluster().cloned() else {
        return next.run(request).await;
    };
    let routing = msakit_raft::Routing {
        answered_here,
        reads: msakit_raft::Reads::Local,
        body_limit: state.config.limits.max_body_bytes,
    };
    msakit_raft::route(&cluster, &routing, request, next).await
}

/// Renewals a follower hands on: each known instance's lease is renewed here.
pub(crate) async fn renewals(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RenewalBatch>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let cluster = state.writes.cluster().ok_or_else(not_clustered)?;
    msakit_raft::check_peer(cluster, &headers)?;
    let Json(batch) = body?;
    for (namespace, service, id) in &batch.instances {
        // An instance evicted meanwhile hears 404 on its next heartbeat and registers again.
        let _ = state.writes.renew_handed_on(namespace, service, id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// This node's view of the cluster: role, term, leader, indexes and members.
#[utoipa::path(get, path = "/v1/cluster",
    responses((status = 200, body = ClusterStatus), (status = 409, body = ErrorBody)))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<ClusterStatus>, ApiError> {
    let cluster = state.writes.cluster().ok_or_else(not_clustered)?;
    Ok(Json(cluster.status()))
}

/// Adds a node: it catches up as a learner, then becomes a voter. Answered by the leader.
#[utoipa::path(post, path = "/v1/cluster/nodes", request_body = msakit_raft::NewNode,
    responses((status = 200, body = ClusterStatus), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn add_node(
    State(state): State<AppState>,
    body: Result<Json<msakit_raft::NewNode>, JsonRejection>,
) -> Result<Json<ClusterStatus>, ApiError> {
    let cluster = state.writes.cluster().cloned().ok_or_else(not_clustered)?;
    let Json(node) = body?;
    Ok(Json(msakit_raft::add_node(&cluster, node).await?))
}

/// Removes a node from the voters and the cluster. Answered by the leader.
#[utoipa::path(delete, path = "/v1/cluster/nodes/{node_id}",
    params(("node_id" = u64, Path, description = "The node to remove")),
    responses((status = 200, body = ClusterStatus), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn remove_node(
    State(state): State<AppState>,
    path: Result<Path<NodeId>, PathRejection>,
) -> Result<Json<ClusterStatus>, ApiError> {
    let cluster = state.writes.cluster().cloned().ok_or_else(not_clustered)?;
    let Path(id) = path?;
    Ok(Json(msakit_raft::remove_node(&cluster, id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_and_reads_stay_here_and_writes_do_not() {
        let put = Method::PUT;
        assert!(answered_here(&put, "/v1/services/a/instances/b/heartbeat"));
        assert!(answered_here(&put, "/eureka/apps/APP/i-1"));
        assert!(answered_here(&put, "/eureka/v2/apps/APP/i-1"));
        assert!(!answered_here(&put, "/eureka/apps/APP/i-1/status"));
        assert!(!answered_here(&put, "/v1/services/a/instances/b"));
        assert!(!answered_here(&Method::POST, "/eureka/apps/APP"));
        assert!(answered_here(&Method::POST, "/v1/cluster/renewals"));
        // An instance whose id is `heartbeat` registers through the leader like any other.
        assert!(!answered_here(&put, "/v1/services/a/instances/heartbeat"));
        assert!(!answered_here(&put, "/eureka/apps/APP/i-1/metadata"));
    }
}
