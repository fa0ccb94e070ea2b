//! Raft messages between nodes: JSON over HTTP (`POST /raft/{append,vote,snapshot}` on each
//! node's own API port), with the cluster token when auth is on.

use std::marker::PhantomData;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use crate::log_format::{LogFormat, PeerFormats};
use crate::{NodeId, TypeConfig};

/// The header a node sets on requests it hands to the leader, so they are never handed on
/// again.
pub const FORWARDED_BY: &str = "x-msakit-forwarded-by";

/// Makes connections to peers.
pub(crate) struct RaftTransport<C> {
    client: reqwest::Client,
    scheme: &'static str,
    token: Option<String>,
    /// What each peer's answers say it reads.
    formats: Arc<PeerFormats>,
    types: PhantomData<fn() -> C>,
}

impl<C> Clone for RaftTransport<C> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            scheme: self.scheme,
            token: self.token.clone(),
            formats: Arc::clone(&self.formats),
            types: PhantomData,
        }
    }
}

impl<C> RaftTransport<C> {
    /// A transport over `client` (`scheme` `http` or `https`) presenting `token`, if any,
    /// noting in `formats` what each peer says it reads.
    pub(crate) fn new(
        client: reqwest::Client,
        scheme: &'static str,
        token: Option<String>,
        formats: Arc<PeerFormats>,
    ) -> Self {
        Self {
            client,
            scheme,
            token,
            formats,
            types: PhantomData,
        }
    }
}

/// A connection to one peer.
pub(crate) struct Peer<C> {
    transport: RaftTransport<C>,
    target: NodeId,
    addr: String,
}

impl<C: TypeConfig> RaftNetworkFactory<C> for RaftTransport<C> {
    type Network = Peer<C>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer<C> {
        Peer {
            transport: self.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl<C> Peer<C> {
    async fn post<Req, Resp, E>(
        &self,
        path: &str,
        body: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut request = self
            .transport
            .client
            .post(format!(
                "{}://{}/raft/{path}",
                self.transport.scheme, self.addr
            ))
            .timeout(option.hard_ttl())
            .json(body);
        if let Some(token) = &self.transport.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        self.transport
            .formats
            .heard(self.target, LogFormat::from_headers(response.headers()));
        if !response.status().is_success() {
            let status = std::io::Error::other(format!(
                "peer {} answered {}",
                self.target,
                response.status()
            ));
            return Err(RPCError::Network(NetworkError::new(&status)));
        }
        let answer: Result<Resp, RaftError<NodeId, E>> = response
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl<C: TypeConfig> RaftNetwork<C> for Peer<C> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.post("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.post("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.post("vote", &rpc, &option).await
    }
}
