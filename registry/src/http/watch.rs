//! `GET /v1/watch`: a Server-Sent-Events stream of registry changes.
//!
//! The stream starts with `event: snapshot` (every watched service as it is) unless the client
//! resumes: with `Last-Event-ID` (sent by browsers' `EventSource` on reconnect) or `?index=N`, it
//! gets the changes after N from the history instead, or a fresh snapshot when the history no
//! longer reaches back that far. Then every change follows as `event: change`, with its index
//! as the event id. A watcher too slow to keep up is disconnected and resumes on reconnect.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use msakit_api::registry::{Change, DEFAULT_NAMESPACE};
use msakit_server_kit::{LiveFrames, event_stream, sse_frame};
use tokio::sync::broadcast;

use super::AppState;
use super::error::ApiError;
use crate::registry::{ChangeRecord, RegistryEvent};
use crate::validate::{self, NameKind};

/// What a watcher asked for.
struct WatchRequest {
    namespace: String,
    /// Empty means every service.
    services: HashSet<String>,
    resume_from: Option<u64>,
}

fn parse(query: Option<&str>, headers: &HeaderMap) -> Result<WatchRequest, ApiError> {
    let mut request = WatchRequest {
        namespace: DEFAULT_NAMESPACE.to_owned(),
        services: HashSet::new(),
        resume_from: None,
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "service" => {
                request.services.insert(value.into_owned());
            }
            "namespace" => request.namespace = value.into_owned(),
            "index" => {
                let index = value.parse().map_err(|_| {
                    ApiError::bad_request(
                        "invalid_index",
                        format!("index must be a number, got {value:?}"),
                    )
                })?;
                request.resume_from = msakit_server_kit::check_index(Some(index))?;
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("unknown parameter {other:?} (expected service, namespace, index)"),
                ));
            }
        }
    }
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        if let Ok(index) = last.trim().parse() {
            request.resume_from = Some(index);
        }
    }
    Ok(request)
}

/// Watch changes: `?service=a&service=b` (none: all), `&namespace=`, resume with `&index=` or
/// `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/watch",
    params(("service" = Option<Vec<String>>, Query, description = "services to watch; none: all"),
        ("namespace" = Option<String>, Query), ("index" = Option<u64>, Query, description = "resume after this index")),
    responses((status = 200, content_type = "text/event-stream", description = "snapshot, then changes")))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Result<Response, ApiError> {
    let slot = peer
        .map(|axum::Extension(axum::extract::ConnectInfo(peer))| state.watchers.admit(peer.ip()))
        .transpose()?;
    let mut request = parse(query.as_deref(), &headers)?;
    for service in &request.services {
        validate::name(NameKind::Service, service)?;
    }
    validate::name(NameKind::Namespace, &request.namespace)?;
    let wanted = {
        let services = std::mem::take(&mut request.services);
        move |name: &str| services.is_empty() || services.contains(name)
    };

    let resumed = request
        .resume_from
        .and_then(|index| state.registry.changes_since(index));
    let (first, receiver): (Vec<Bytes>, _) = match resumed {
        Some((missed, receiver)) => {
            let frames = missed
                .iter()
                .filter(|c| c.namespace == request.namespace && wanted(&c.service))
                .map(|c| frame(c))
                .collect();
            (frames, receiver)
        }
        None => {
            let (snapshot, receiver) = state
                .registry
                .snapshot_and_subscribe(&request.namespace, &wanted);
            let json = serde_json::to_string(&snapshot).map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "could not encode",
                )
            })?;
            (vec![sse_frame(snapshot.index, "snapshot", &json)], receiver)
        }
    };
    let live = Changes {
        receiver,
        namespace: request.namespace,
        wanted: Box::new(wanted),
    };
    Ok(event_stream(
        first,
        live,
        state.config.watch.keep_alive,
        state.shutdown.clone(),
        (state.metrics.watcher(), slot),
    ))
}

/// The changes a watcher asked for, as they are committed.
struct Changes {
    receiver: broadcast::Receiver<RegistryEvent>,
    namespace: String,
    wanted: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl LiveFrames for Changes {
    /// The next wanted change's frame; `None` ends the stream (when the watcher fell so far
    /// behind that changes were lost, or when the registry's state was replaced by a snapshot:
    /// it then resumes from its last event id on reconnect, or starts over).
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            match self.receiver.recv().await {
                Ok(RegistryEvent::Replaced) | Err(_) => return None,
                Ok(RegistryEvent::Changed(change))
                    if change.namespace == self.namespace && (self.wanted)(&change.service) =>
                {
                    return Some(frame(&change));
                }
                Ok(RegistryEvent::Changed(_)) => {}
            }
        }
    }
}

/// Whether a watch request's query and headers parse, for the fuzz targets.
pub(crate) fn parses(query: Option<&str>, headers: &HeaderMap) -> bool {
    parse(query, headers).is_ok()
}

/// A change's Server-Sent-Events frame (`id`, `event: change`, the [`ChangeEvent`] as `data`),
/// rendered by the first watcher that sends it and shared by every other.
fn frame(change: &ChangeRecord) -> Bytes {
    change
        .rendered
        .get_or_init(|| {
            // `ChangeEvent`'s JSON, from a borrowed change.
            #[derive(serde::Serialize)]
            struct Event<'a> {
                index: u64,
                #[serde(flatten)]
                change: &'a Change,
            }
            let event = Event {
                index: change.index,
                change: &change.change,
            };
            let json = serde_json::to_string(&event).expect("plain data serialises");
            sse_frame(change.index, "change", &json)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use msakit_api::registry::{ChangeEvent, RemovalReason};

    use super::*;

    #[test]
    fn a_frame_carries_the_change_event_as_the_api_defines_it() {
        let change = Change::Removed {
            namespace: "public".into(),
            service: "orders".into(),
            id: "o1".into(),
            reason: RemovalReason::Expired,
        };
        let record = ChangeRecord {
            index: 42,
            namespace: "public".into(),
            service: "orders".into(),
            id: "o1".into(),
            at_ms: 1,
            change: change.clone(),
            departed: None,
            rendered: OnceLock::new(),
        };
        let json = serde_json::to_string(&ChangeEvent { index: 42, change }).unwrap();
        let expected = format!("id: 42\nevent: change\ndata: {json}\n\n");
        assert_eq!(frame(&record), expected.as_bytes());
        assert!(record.rendered.get().is_some(), "rendered once, kept");
    }
}
