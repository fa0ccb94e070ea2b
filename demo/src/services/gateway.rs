//! The gateway: the single entry point. Authenticates clients by API key, rate-limits each
//! client, and routes `/api/orders/**` to the `order` service by name through discovery, with
//! the route's timeout / retry / breaker settings read from the config server and swapped in
//! live when they change.

use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use msakit::{CallErrorKind, Client, ServiceClient};
use msakit_server_kit::ApiError;
use serde::Deserialize;

use super::order::CallSettings;
use super::{Faults, Instance, ServiceArgs, ServiceConfig};

/// The gateway's config document.
#[derive(Debug, Clone, Deserialize)]
struct GatewayConfig {
    #[serde(default)]
    faults: Faults,
    /// Accepted API keys (`x-api-key` or `Authorization: Bearer`).
    api_keys: Vec<String>,
    /// Requests per second per client.
    #[serde(default = "default_rate")]
    rate_per_client: u32,
    /// The `/api/orders/**` route's call settings.
    #[serde(default)]
    orders_route: CallSettings,
}

fn default_rate() -> u32 {
    200
}

impl ServiceConfig for GatewayConfig {
    fn faults(&self) -> &Faults {
        &self.faults
    }
}

/// What a config change swaps.
struct Live {
    api_keys: Vec<String>,
    limiter: DefaultKeyedRateLimiter<String>,
    orders: ServiceClient,
    /// The settings `orders` was built from, to rebuild only when they change.
    settings: String,
}

#[derive(Clone)]
struct Gateway {
    live: Arc<RwLock<Arc<Live>>>,
}

fn build(config: &GatewayConfig, client: &Client, previous: Option<&Live>) -> anyhow::Result<Live> {
    let settings = format!("{:?}", config.orders_route);
    let orders = match previous {
        Some(previous) if previous.settings == settings => previous.orders.clone(),
        _ => client.service_client(config.orders_route.options())?,
    };
    let rate = NonZeroU32::new(config.rate_per_client.max(1)).unwrap_or(NonZeroU32::MIN);
    Ok(Live {
        api_keys: config.api_keys.clone(),
        limiter: RateLimiter::keyed(Quota::per_second(rate)),
        orders,
        settings,
    })
}

pub(crate) async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let instance = Instance::<GatewayConfig>::start(args).await?;
    let live = Arc::new(RwLock::new(Arc::new(build(
        &instance.config.current(),
        &instance.client,
        None,
    )?)));
    // Swap in changed settings as the config server pushes them.
    let mut changes = instance.config.subscribe();
    let swap = Arc::clone(&live);
    let client = instance.client.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let config = changes.borrow_and_update().clone();
            let previous = swap.read().unwrap_or_else(|e| e.into_inner()).clone();
            match build(&config, &client, Some(&previous)) {
                Ok(next) => {
                    tracing::info!(route = %next.settings, "gateway settings reloaded");
                    metrics::counter!("demo_gateway_reloads_total").increment(1);
                    *swap.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
                }
                Err(e) => tracing::error!(error = %e, "new gateway settings refused"),
            }
        }
    });
    let routes = Router::new()
        .route("/api/orders", any(route_orders))
        .route("/api/orders/{*rest}", any(route_orders))
        .with_state(Gateway { live });
    instance.serve(routes).await
}

async fn route_orders(State(gateway): State<Gateway>, request: Request) -> Response {
    let live = gateway
        .live
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (parts, body) = request.into_parts();
    let Some(client) = msakit_server_kit::presented_token(&parts.headers)
        .or_else(|| header(&parts.headers, "x-api-key"))
        .filter(|key| {
            live.api_keys
                .iter()
                .any(|k| msakit_server_kit::constant_time_eq(k.as_bytes(), key.as_bytes()))
        })
    else {
        return ApiError::unauthorized().into_response();
    };
    if let Err(not_until) = live.limiter.check_key(&client) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        metrics::counter!("demo_gateway_rate_limited_total").increment(1);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("client over its rate; retry in {} ms", wait.as_millis()),
        )
        .into_response();
        if let Ok(value) = wait.as_secs().max(1).to_string().parse() {
            response.headers_mut().insert("retry-after", value);
        }
        return response;
    }
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "at most 64 KiB",
        )
        .into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .trim_start_matches("/api");
    forward(&live.orders, parts.method, path, &parts.headers, body).await
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn forward(
    client: &ServiceClient,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut request = client.request(method, "order", path).body(body);
    for name in ["content-type", "idempotency-key", "traceparent"] {
        if let Some(value) = header(headers, name) {
            request = request.header(name, &value);
        }
    }
    // An order carries its idempotency key, so it may be retried on another instance.
    if headers.contains_key("idempotency-key") {
        request = request.retryable();
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let content_type = response.headers().get("content-type").cloned();
            let body = response.bytes().await.unwrap_or_default();
            let mut answer = (status, body).into_response();
            if let Some(content_type) = content_type {
                answer.headers_mut().insert("content-type", content_type);
            }
            answer
        }
        Err(error) => {
            let (status, code) = match &error.kind {
                CallErrorKind::BreakerOpen(_) => (StatusCode::SERVICE_UNAVAILABLE, "breaker_open"),
                CallErrorKind::NoInstances => (StatusCode::SERVICE_UNAVAILABLE, "no_instances"),
                CallErrorKind::Discovery(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable")
                }
                CallErrorKind::Deadline(_) => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
                _ => (StatusCode::BAD_GATEWAY, "upstream_failed"),
            };
            ApiError::new(status, code, error.to_string()).into_response()
        }
    }
}
