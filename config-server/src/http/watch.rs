//! `GET /v1/watch/{application}/{profiles}/{label}`: Server-Sent Events with the resolved
//! configuration first, then again after every change that touches one of its documents —
//! including the shared `application` documents every application inherits.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use tokio::sync::broadcast;

use super::AppState;
use super::auth::Identity;
use super::error::ApiError;
use super::native::profiles;
use crate::config::Scope;
use crate::config_store::{Change, ConfigStore};
use crate::document::{self, DocKey};

/// Watch a resolved configuration.
#[utoipa::path(get, path = "/v1/watch/{application}/{profiles}/{label}",
    params(("application" = String, Path), ("profiles" = String, Path), ("label" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", description = "`event: config` with the resolved view, first and after every change")))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    peer: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Result<Response, ApiError> {
    identity.require(Scope::Read)?;
    let slot = peer
        .map(|Extension(axum::extract::ConnectInfo(peer))| state.watchers.admit(peer.ip()))
        .transpose()?;
    let Path((application, profile_segment, label)) = path?;
    let label = document::normalize_label(&label);
    document::check_name("application", &application)?;
    document::check_label(&label)?;
    let profiles = profiles(&profile_segment)?;
    // Subscribe before the first resolve, so no change falls between them.
    let receiver = state.configs.subscribe();
    let sources = ConfigStore::sources(&[&application], &profiles, &label);
    let mut watch = Watch {
        receiver,
        keep_alive: tokio::time::interval(state.config.watch.keep_alive),
        state: state.clone(),
        application,
        profiles,
        label,
        sources,
        last_index: 0,
        _slot: slot,
    };
    watch.keep_alive.reset();
    state.metrics.watchers(1.0);
    let first = watch.frame();
    let frames =
        stream::iter([Ok::<_, Infallible>(first)]).chain(stream::unfold(watch, Watch::next));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response())
}

struct Watch {
    receiver: broadcast::Receiver<Arc<Change>>,
    keep_alive: tokio::time::Interval,
    state: AppState,
    application: String,
    profiles: Vec<String>,
    label: String,
    sources: Vec<DocKey>,
    last_index: u64,
    /// This client's watcher slot, given back when the stream ends.
    _slot: Option<msakit_server_kit::WatcherSlot>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.state.metrics.watchers(-1.0);
    }
}

impl Watch {
    fn frame(&mut self) -> Bytes {
        let resolved = self
            .state
            .configs
            .resolve(&self.application, &self.profiles, &self.label);
        self.last_index = resolved.index;
        let json = serde_json::to_string(&resolved).expect("plain data serialises");
        Bytes::from(format!(
            "id: {}\nevent: config\ndata: {json}\n\n",
            resolved.index
        ))
    }

    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            tokio::select! {
                biased;
                _ = self.state.shutdown.cancelled() => return None,
                change = self.receiver.recv() => match change {
                    Ok(change) if self.sources.contains(&change.key) => {
                        let frame = self.frame();
                        self.state.metrics.pushed(change.committed.elapsed());
                        return Some((Ok(frame), self));
                    }
                    Ok(_) => {}
                    // Fell behind: send the current view, which covers whatever was missed.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let frame = self.frame();
                        return Some((Ok(frame), self));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.keep_alive.tick() => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
            }
        }
    }
}
