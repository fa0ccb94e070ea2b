//! Cluster mode over HTTP: the admin API (status, add and remove nodes) and the middleware that
//! sends each request where it can be answered — writes and linearizable reads to the leader,
//! stale reads and watches to this node. Raft's own messages are `msakit_raft::raft_routes`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Extension, Path, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use msakit_api::error::ErrorBody;

use super::AppState;
use super::auth::Identity;
use super::error::ApiError;
use crate::cluster::{ClusterStatus, NodeId};
use crate::config::Scope;

fn not_clustered() -> ApiError {
    msakit_raft::not_clustered("--node-id and --peers")
}

/// Served by whichever node is asked: operations, Raft itself, watches, and stateless helpers.
fn answered_here(method: &Method, path: &str) -> bool {
    matches!(
        path,
        "/health" | "/metrics" | "/openapi.json" | "/encrypt" | "/decrypt"
    ) || path.starts_with("/raft/")
        || path.starts_with("/v1/watch/")
        || (method == Method::GET && path == "/v1/cluster")
}

/// Sends each request where it can be answered (a no-op on a single node): writes and
/// linearizable reads to the leader.
pub(crate) async fn route(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = state.writes.cluster().cloned() else {
        return next.run(request).await;
    };
    let routing = msakit_raft::Routing {
        answered_here,
        reads: msakit_raft::Reads::Linearizable,
        body_limit: state.config.max_document_bytes + 64 * 1024,
    };
    msakit_raft::route(&cluster, &routing, request, next).await
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
    Extension(identity): Extension<Identity>,
    body: Result<Json<msakit_raft::NewNode>, JsonRejection>,
) -> Result<Json<ClusterStatus>, ApiError> {
    identity.require(Scope::Write)?;
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
    Extension(identity): Extension<Identity>,
    path: Result<Path<NodeId>, PathRejection>,
) -> Result<Json<ClusterStatus>, ApiError> {
    identity.require(Scope::Write)?;
    let cluster = state.writes.cluster().cloned().ok_or_else(not_clustered)?;
    let Path(id) = path?;
    Ok(Json(msakit_raft::remove_node(&cluster, id).await?))
}
