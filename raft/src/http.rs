//! A cluster over HTTP: the Raft messages between nodes ([`raft_routes`]), and the middleware
//! that sends each client request where it can be answered ([`route`]) — writes to the leader,
//! reads to the leader (linearizable) or to this node (local, flagged stale on followers).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use msakit_server_kit::{ApiError, constant_time_eq, presented_token};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};

use crate::log_format::{LOG_FORMAT, LogFormat};
use crate::{Cluster, ClusterError, ClusterStatus, FORWARDED_BY, NodeId, TypeConfig};

/// A request header asking for a read from this node, however stale: `x-msakit-consistency:
/// stale`. The answer carries `x-msakit-stale: true` and `x-msakit-staleness-ms` (time since a
/// leader last reached this node).
pub const CONSISTENCY: &str = "x-msakit-consistency";

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

/// The 503 for `e`, with `Retry-After` and the leader it names in `x-msakit-leader`.
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

/// How a server's reads are served in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// By the leader after it confirmed it still leads, unless the request asks for a stale
    /// read ([`CONSISTENCY`]).
    Linearizable,
    /// By whichever node is asked; answers are flagged stale unless the node leads with a
    /// quorum's recent acknowledgement.
    Local,
}

/// How a server's leader-bound requests go.
#[derive(Debug, Clone, Copy)]
pub struct Routing {
    /// How reads are served.
    pub reads: Reads,
    /// The largest body handed to the leader.
    pub body_limit: usize,
}

fn flag_stale<C: TypeConfig>(cluster: &Cluster<C>, response: &mut Response) {
    let staleness = cluster.staleness_ms();
    let headers = response.headers_mut();
    headers.insert("x-msakit-stale", HeaderValue::from_static("true"));
    if let Some(ms) = staleness {
        headers.insert("x-msakit-staleness-ms", HeaderValue::from(ms));
    }
}

/// `routes` with every request they match sent where [`route`] says (when `cluster` is given;
/// unchanged on a single node): the routes whose answers are the leader's. What any node
/// answers itself (operations, Raft, watches, lease renewals) lives in another router merged
/// beside this one, so where a request goes is decided by the route it matches, never by
/// re-reading its path, and a route added to neither cannot be served at all.
pub fn leader_bound<S, C>(
    routes: Router<S>,
    cluster: Option<&Arc<Cluster<C>>>,
    routing: Routing,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    C: TypeConfig,
{
    match cluster {
        None => routes,
        Some(cluster) => routes.route_layer(axum::middleware::from_fn_with_state(
            (Arc::clone(cluster), routing),
            route_matched::<C>,
        )),
    }
}

async fn route_matched<C: TypeConfig>(
    State((cluster, routing)): State<(Arc<Cluster<C>>, Routing)>,
    request: Request,
    next: Next,
) -> Response {
    route(&cluster, &routing, request, next).await
}

/// Sends `request` where it can be answered: here, or to the leader (followers hand writes to
/// it, marked so they are never handed on twice). A minority answers writes with 503
/// `not_leader` / `no_quorum` naming the leader it last knew.
pub async fn route<C: TypeConfig>(
    cluster: &Cluster<C>,
    routing: &Routing,
    request: Request,
    next: Next,
) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let stale_asked = request
        .headers()
        .get(CONSISTENCY)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"stale"));
    if read && (stale_asked || routing.reads == Reads::Local) {
        let mut response = next.run(request).await;
        if stale_asked || !cluster.is_current() {
            flag_stale(cluster, &mut response);
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
            forward(cluster, routing.body_limit, &addr, request).await
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
async fn forward<C: TypeConfig>(
    cluster: &Cluster<C>,
    limit: usize,
    addr: &str,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
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
        .request(parts.method, cluster.peer_url(addr, target))
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
                .body(axum::body::Body::from_stream(answer.bytes_stream()))
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

/// A node to add (`POST /v1/cluster/nodes`).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    /// Its id (unique, at least 1).
    pub node_id: NodeId,
    /// The `host:port` of its HTTP API.
    pub addr: String,
}

/// Adds `node`: it catches up as a learner, then becomes a voter; the status after. Answered by
/// the leader.
pub async fn add_node<C: TypeConfig>(
    cluster: &Cluster<C>,
    node: NewNode,
) -> Result<ClusterStatus, ApiError> {
    if node.node_id == 0 || node.addr.is_empty() || node.addr.len() > 255 {
        return Err(ApiError::bad_request(
            "invalid_node",
            "a node needs an id of at least 1 and a host:port address",
        ));
    }
    cluster.add_node(node.node_id, node.addr).await?;
    Ok(cluster.status())
}

/// Removes node `id` from the voters and the cluster; the status after. Answered by the leader.
pub async fn remove_node<C: TypeConfig>(
    cluster: &Cluster<C>,
    id: NodeId,
) -> Result<ClusterStatus, ApiError> {
    cluster.remove_node(id).await?;
    Ok(cluster.status())
}

/// The 409 a single node answers the cluster API with; `how` says how to start a cluster node.
pub fn not_clustered(how: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_clustered",
        format!("this server runs as a single node (start it with {how})"),
    )
}

/// Refuses a message that does not present the cluster token (when one is configured).
pub fn check_peer<C: TypeConfig>(
    cluster: &Cluster<C>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if let Some(expected) = cluster.token() {
        let presented = presented_token(headers).unwrap_or_default();
        if !constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(())
}

/// The routes Raft messages arrive on — `/append`, `/vote`, `/snapshot`, to be nested under
/// `/raft` — with a body limit of their own (they carry log entries and snapshot chunks).
pub fn raft_routes<C: TypeConfig>(cluster: Arc<Cluster<C>>) -> Router {
    Router::new()
        .route("/append", post(append::<C>))
        .route("/vote", post(vote::<C>))
        .route("/snapshot", post(snapshot::<C>))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .layer(axum::middleware::map_response_with_state(
            cluster.log_format(),
            say_log_format,
        ))
        .with_state(cluster)
}

/// Every answer to a Raft message says which log format this node reads.
async fn say_log_format(State(format): State<LogFormat>, mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(LOG_FORMAT, format.header_value());
    response
}

/// Append entries (and heartbeats) from the leader.
async fn append<C: TypeConfig>(
    State(cluster): State<Arc<Cluster<C>>>,
    headers: HeaderMap,
    body: Result<Json<AppendEntriesRequest<C>>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_peer(&cluster, &headers)?;
    let Json(rpc) = body?;
    let answer = cluster.raft().append_entries(rpc).await;
    // Only a leader this node accepts counts as heard (not one deposed meanwhile).
    if matches!(&answer, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
        cluster.heard_from_leader();
    }
    Ok(Json(answer).into_response())
}

/// A vote request from a candidate.
async fn vote<C: TypeConfig>(
    State(cluster): State<Arc<Cluster<C>>>,
    headers: HeaderMap,
    body: Result<Json<VoteRequest<NodeId>>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_peer(&cluster, &headers)?;
    let Json(rpc) = body?;
    Ok(Json(cluster.raft().vote(rpc).await).into_response())
}

/// A snapshot chunk from the leader.
async fn snapshot<C: TypeConfig>(
    State(cluster): State<Arc<Cluster<C>>>,
    headers: HeaderMap,
    body: Result<Json<InstallSnapshotRequest<C>>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_peer(&cluster, &headers)?;
    let Json(rpc) = body?;
    let answer = cluster.raft().install_snapshot(rpc).await;
    if answer.is_ok() {
        cluster.heard_from_leader();
    }
    Ok(Json(answer).into_response())
}
