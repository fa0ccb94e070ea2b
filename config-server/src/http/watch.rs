//! `GET /v1/watch/{application}/{profiles}/{label}`: Server-Sent Events with the resolved
//! configuration first, then again after every change that touches one of its documents —
//! including the shared `application` documents every application inherits.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::response::Response;
use msakit_server_kit::{LiveFrames, event_stream, sse_frame};
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
    identity: Identity,
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
        state: state.clone(),
        application,
        profiles,
        label,
        sources,
    };
    let first = watch.frame();
    Ok(event_stream(
        vec![first],
        watch,
        state.config.watch.keep_alive,
        state.shutdown.clone(),
        (state.metrics.watcher(), slot),
    ))
}

/// One watcher's view: re-resolved and sent after every change to one of its documents.
struct Watch {
    receiver: broadcast::Receiver<Arc<Change>>,
    state: AppState,
    application: String,
    profiles: Vec<String>,
    label: String,
    sources: Vec<DocKey>,
}

impl Watch {
    fn frame(&mut self) -> Bytes {
        let resolved = self
            .state
            .configs
            .resolve(&self.application, &self.profiles, &self.label);
        let json = serde_json::to_string(&resolved).expect("plain data serialises");
        sse_frame(resolved.index, "config", &json)
    }
}

impl LiveFrames for Watch {
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            match self.receiver.recv().await {
                Ok(change) if self.sources.contains(&change.key) => {
                    let frame = self.frame();
                    self.state.metrics.pushed(change.committed.elapsed());
                    return Some(frame);
                }
                Ok(_) => {}
                // Fell behind: send the current view, which covers whatever was missed.
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(self.frame()),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
