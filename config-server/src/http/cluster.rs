//! Cluster mode over HTTP: the admin API (status, add and remove nodes). Where each route is
//! answered is decided where the router is built ([`super::router`]); Raft's own messages are
//! `msakit_raft::raft_routes`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use msakit_api::error::ErrorBody;

use super::AppState;
use super::auth::Identity;
use super::error::ApiError;
use crate::cluster::{ClusterStatus, NodeId};
use crate::config::Scope;

fn not_clustered() -> ApiError {
    msakit_raft::not_clustered("--node-id and --peers")
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
    identity: Identity,
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
    identity: Identity,
    path: Result<Path<NodeId>, PathRejection>,
) -> Result<Json<ClusterStatus>, ApiError> {
    identity.require(Scope::Write)?;
    let cluster = state.writes.cluster().cloned().ok_or_else(not_clustered)?;
    let Path(id) = path?;
    Ok(Json(msakit_raft::remove_node(&cluster, id).await?))
}
