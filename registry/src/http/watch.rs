//! `GET /v1/watch`: a Server-Sent-Events stream of registry changes.
//!
//! The stream starts with `event: snapshot` (every watched service as it is) unless the client
//! resumes: with `Last-Event-ID` (sent by browsers' `EventSource` on reconnect) or `?index=N`, it
//! gets the changes after N from the history instead, or a fresh snapshot when the history no
//! longer reaches back that far. Then every change follows as `event: change`, with its index
//! as the event id. A watcher too slow to keep up is disconnected and resumes on reconnect.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use msakit_api::registry::DEFAULT_NAMESPACE;
use tokio_stream::wrappers::BroadcastStream;

use super::AppState;
use super::error::ApiError;
use crate::metrics::Metrics;
use crate::registry::ChangeRecord;

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
                request.resume_from = Some(value.parse().map_err(|_| {
                    ApiError::bad_request(
                        "invalid_index",
                        format!("index must be a number, got {value:?}"),
                    )
                })?)
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

/// Counts a watcher for as long as its stream lives.
struct WatcherGauge(Metrics);

impl WatcherGauge {
    fn new(metrics: Metrics) -> Self {
        metrics.watchers(1.0);
        Self(metrics)
    }
}

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        self.0.watchers(-1.0);
    }
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
) -> Result<Response, ApiError> {
    let request = parse(query.as_deref(), &headers)?;
    for service in &request.services {
        crate::validate::name("service", service)?;
    }
    crate::validate::name("namespace", &request.namespace)?;
    let wanted = {
        let services = request.services.clone();
        move |name: &str| services.is_empty() || services.contains(name)
    };

    let resumed = request
        .resume_from
        .and_then(|index| state.registry.changes_since(index));
    let (first, receiver): (Vec<Event>, _) = match resumed {
        Some((missed, receiver)) => {
            let events = missed
                .iter()
                .filter(|c| c.namespace == request.namespace && wanted(&c.service))
                .map(|c| change_event(c))
                .collect();
            (events, receiver)
        }
        None => {
            let (snapshot, receiver) = state
                .registry
                .snapshot_and_subscribe(&request.namespace, &wanted);
            let event = Event::default()
                .id(snapshot.index.to_string())
                .event("snapshot")
                .json_data(&snapshot)
                .map_err(|_| {
                    ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "could not encode",
                    )
                })?;
            (vec![event], receiver)
        }
    };

    let namespace = request.namespace.clone();
    let gauge = Arc::new(WatcherGauge::new(state.metrics.clone()));
    let live = BroadcastStream::new(receiver)
        // A lagging watcher has missed changes: end its stream so it resumes from its last id.
        .take_while(|item| std::future::ready(item.is_ok()))
        .filter_map(move |item| {
            let keep = match &item {
                Ok(change) => change.namespace == namespace && wanted(&change.service),
                Err(_) => false,
            };
            std::future::ready(item.ok().filter(|_| keep))
        })
        .map(|change| change_event(&change));
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(
        stream::iter(first)
            .chain(live)
            .map(move |event| {
                let _alive = &gauge;
                Ok::<_, Infallible>(event)
            })
            .take_until(state.shutdown.clone().cancelled_owned()),
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.watch.keep_alive))
        .into_response())
}

fn change_event(change: &ChangeRecord) -> Event {
    Event::default()
        .id(change.index.to_string())
        .event("change")
        .data(&change.json)
}
