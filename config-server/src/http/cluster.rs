//! Cluster mode over HTTP: the Raft messages between nodes, the admin API (status, add and
//! remove nodes), and the middleware that sends each request where it can be answered — writes
//! and linearizable reads to the leader, stale reads and watches to this node.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use msakit_api::error::ErrorBody;
use msakit_server_kit::{constant_time_eq, presented_token};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Deserialize;

use super::AppState;
use super::auth::Identity;
use super::error::ApiError;
use crate::cluster::{Cluster, ClusterError, ClusterStatus, FORWARDED_BY, NodeId, TypeConfig};
use crate::config::Scope;

/// A request header asking for a read from this node, however stale: `x-msakit-consistency:
/// stale`. The answer carries `x-msakit-stale: true` and `x-msakit-staleness-ms` (time since a
/// leader last reached this node).
pub(crate) const CONSISTENCY: &str = "x-msakit-consistency";

fn not_clustered() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_clustered",
        "this server runs as a single node (start it with --node-id and --peers)",
    )
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let code = match &e {
            ClusterError::NotLeader { .. } => "not_leader",
            ClusterError::NoQuorum { .. } => "no_quorum",
            ClusterError::Membership(_) => {
                return ApiError::new(StatusCode::CONFLICT, "membership_refused", e.to_string());
            }
            ClusterError::Fatal(_) => "cluster_unavailable",
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string())
    }
}

fn unavailable(e: ClusterError) -> Response {
    let leader = e.leader().cloned();
    let mut response = ApiError::from(e).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    if let Some((id, addr)) = leader {
        if let Ok(value) = HeaderValue::from_str(&format!("{id} {addr}")) {
            response.headers_mut().insert("x-msakit-leader", value);
        }
    }
    response
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

/// Sends each request where it can be answered (a no-op on a single node).
pub(crate) async fn route(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = state.service.cluster().cloned() else {
        return next.run(request).await;
    };
    if answered_here(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let stale = request
        .headers()
        .get(CONSISTENCY)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"stale"));
    if read && stale {
        let staleness = cluster.staleness_ms();
        let mut response = next.run(request).await;
        let headers = response.headers_mut();
        headers.insert("x-msakit-stale", HeaderValue::from_static("true"));
        if let Some(ms) = staleness {
            headers.insert("x-msakit-staleness-ms", HeaderValue::from(ms));
        }
        return response;
    }
    if cluster.is_leader() {
        if read {
            if let Err(e) = cluster.linearize().await {
                return unavailable(e);
            }
        }
        return next.run(request).await;
    }
    let leader = cluster.leader();
    match leader {
        Some((_, addr)) if !request.headers().contains_key(FORWARDED_BY) => {
            forward(&state, &cluster, &addr, request).await
        }
        _ => unavailable(ClusterError::NotLeader {
            node: cluster.node_id(),
            leader,
        }),
    }
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Hands `request` to the leader at `addr` and streams its answer back.
async fn forward(state: &AppState, cluster: &Cluster, addr: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.config.max_document_bytes + 64 * 1024;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )
        .into_response();
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = cluster
        .forwarder()
        .request(parts.method, format!("http://{addr}{target}"))
        .header(FORWARDED_BY, cluster.node_id())
        .body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if !hop_by_hop(name) {
                    response = response.header(name, value);
                }
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => {
            tracing::warn!(leader = %addr, error = %e, "the leader cannot be reached");
            unavailable(ClusterError::NoQuorum {
                node: cluster.node_id(),
                waited: std::time::Duration::ZERO,
                leader: cluster.leader(),
            })
        }
    }
}

/// The cluster, for a Raft message presenting the cluster token (when one is configured).
fn peer(state: &AppState, headers: &HeaderMap) -> Result<Arc<Cluster>, ApiError> {
    let cluster = state.service.cluster().cloned().ok_or_else(not_clustered)?;
    let expected = state
        .config
        .cluster
        .as_ref()
        .and_then(|c| c.token.as_deref());
    if let Some(expected) = expected {
        let presented = presented_token(headers).unwrap_or_default();
        if !constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(cluster)
}

/// Raft: append entries (and heartbeats) from the leader.
pub(crate) async fn append(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<AppendEntriesRequest<TypeConfig>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let cluster = peer(&state, &headers)?;
    let Json(rpc) = body?;
    cluster.heard_from_leader();
    Ok(Json(cluster.raft().append_entries(rpc).await).into_response())
}

/// Raft: a vote request from a candidate.
pub(crate) async fn vote(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<VoteRequest<NodeId>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let cluster = peer(&state, &headers)?;
    let Json(rpc) = body?;
    Ok(Json(cluster.raft().vote(rpc).await).into_response())
}

/// Raft: a snapshot chunk from the leader.
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<InstallSnapshotRequest<TypeConfig>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let cluster = peer(&state, &headers)?;
    let Json(rpc) = body?;
    cluster.heard_from_leader();
    Ok(Json(cluster.raft().install_snapshot(rpc).await).into_response())
}

/// This node's view of the cluster: role, term, leader, indexes and members.
#[utoipa::path(get, path = "/v1/cluster",
    responses((status = 200, body = ClusterStatus), (status = 409, body = ErrorBody)))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<ClusterStatus>, ApiError> {
    let cluster = state.service.cluster().ok_or_else(not_clustered)?;
    Ok(Json(cluster.status()))
}

/// A node to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewNode {
    /// Its id (unique, at least 1).
    node_id: NodeId,
    /// The `host:port` of its HTTP API.
    addr: String,
}

/// Adds a node: it catches up as a learner, then becomes a voter. Answered by the leader.
#[utoipa::path(post, path = "/v1/cluster/nodes", request_body = NewNode,
    responses((status = 200, body = ClusterStatus), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn add_node(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    body: Result<Json<NewNode>, JsonRejection>,
) -> Result<Json<ClusterStatus>, ApiError> {
    identity.require(Scope::Write)?;
    let cluster = state.service.cluster().cloned().ok_or_else(not_clustered)?;
    let Json(node) = body?;
    if node.node_id == 0 || node.addr.is_empty() || node.addr.len() > 255 {
        return Err(ApiError::bad_request(
            "invalid_node",
            "a node needs an id of at least 1 and a host:port address",
        ));
    }
    cluster.add_node(node.node_id, node.addr).await?;
    Ok(Json(cluster.status()))
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
    let cluster = state.service.cluster().cloned().ok_or_else(not_clustered)?;
    let Path(id) = path?;
    cluster.remove_node(id).await?;
    Ok(Json(cluster.status()))
}
