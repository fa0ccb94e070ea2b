//! The admin listener: `/health`, Prometheus `/metrics`, `/openapi.json`, and the routes in
//! force with their source, version and counters (`/admin/routes`, `/admin/routes/{id}`),
//! behind bearer tokens when configured. API keys are never shown.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use msakit_server_kit::ApiError;
use serde_json::{Value, json};

use crate::live::LiveRoutes;
use crate::rate_limit::SharedCounters;
use crate::routes::Route;

/// What the admin API reads.
#[derive(Clone)]
pub(crate) struct Admin {
    pub(crate) routes: Arc<LiveRoutes>,
    pub(crate) metrics: msakit_server_kit::ServerMetrics,
    pub(crate) tokens: Arc<Vec<String>>,
    pub(crate) shared_counters: Option<SharedCounters>,
}

pub(crate) fn router(admin: Admin) -> Router {
    let protected = Router::new()
        .route("/admin/routes", get(routes))
        .route("/admin/routes/{id}", get(route))
        .layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            require_token,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such admin resource") })
        .with_state(admin)
}

async fn require_token(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    if admin.tokens.is_empty()
        || msakit_server_kit::find_token(request.headers(), &admin.tokens, |t| t.as_str()).is_some()
    {
        return next.run(request).await;
    }
    ApiError::unauthorized().into_response()
}

async fn health(State(admin): State<Admin>) -> Json<Value> {
    let status = admin.routes.status();
    Json(json!({
        "status": "UP",
        "routes": admin.routes.current().routes().len(),
        "version": status.version,
        "redis": admin.shared_counters.as_ref().map(|s| if s.connected() { "UP" } else { "DOWN" }),
    }))
}

fn view(route: &Route) -> Value {
    let spec = &route.spec;
    json!({
        "id": spec.id,
        "uri": spec.uri,
        "order": spec.order,
        "predicates": spec.predicates,
        "filters": spec.filters,
        "auth": spec.auth,
        "rate_limit": spec.rate_limit,
        "cors": spec.cors,
        "call": spec.call,
        "counters": route.counters.view(),
    })
}

async fn routes(State(admin): State<Admin>) -> Json<Value> {
    let table = admin.routes.current();
    let status = admin.routes.status();
    Json(json!({
        "source": status.source,
        "version": status.version,
        "loaded_at": status.loaded_at,
        "refused": status.refused,
        "last_error": status.last_error,
        "api_key_clients": table.set.api_keys.iter().map(|k| &k.client).collect::<Vec<_>>(),
        "jwt_providers": table.set.jwt_providers,
        "routes": table.routes().iter().map(|r| view(r)).collect::<Vec<_>>(),
    }))
}

async fn route(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let table = admin.routes.current();
    table
        .routes()
        .iter()
        .find(|r| r.spec.id == id)
        .map(|r| Json(view(r)))
        .ok_or_else(|| ApiError::not_found(format!("no route {id:?}")))
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let table = admin.routes.current();
    let status = admin.routes.status();
    let text = admin.metrics.render(|| {
        for route in table.routes() {
            route.counters.export(&route.spec.id);
        }
        metrics::gauge!("gateway_routes_version").set(status.version as f64);
        metrics::counter!("gateway_route_sets_refused_total").absolute(status.refused);
        if let Some(shared) = &admin.shared_counters {
            metrics::counter!("gateway_rate_limit_local_fallbacks_total")
                .absolute(shared.fallbacks());
        }
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi() -> Json<Value> {
    Json(json!({
        "openapi": "3.0.3",
        "info": {"title": "msakit-gateway admin API", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/health": {"get": {"summary": "Liveness, the route set's version, Redis's state",
                "responses": {"200": {"description": "up"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition", "content": {"text/plain": {}}}}}},
            "/admin/routes": {"get": {"summary": "The routes in force, their source, version and counters",
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "the route table"}, "401": {"$ref": "#/components/responses/Error"}}}},
            "/admin/routes/{id}": {"get": {"summary": "One route",
                "security": [{"bearer": []}],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the route"}, "401": {"$ref": "#/components/responses/Error"},
                    "404": {"$ref": "#/components/responses/Error"}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "an error", "content": {"application/json": {"schema": {
                "type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}}}}}
        }
    }))
}
