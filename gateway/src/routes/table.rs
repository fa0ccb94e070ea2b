//! The compiled route table: each route's predicates, filters, security, limiter, CORS and
//! target, ready to serve. A reload compiles a new table, carrying over what did not change
//! (a target's breaker and balancer state, a limiter's counts, a provider's cached keys, the
//! route's counters), and swaps it in whole.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::RouteError;
use super::filter::Filters;
use super::predicate::Predicates;
use super::spec::{CorsSpec, RouteSet, RouteSpec};
use crate::counters::RouteCounters;
use crate::rate_limit::{RouteLimiter, SharedCounters};
use crate::security::api_keys::ApiKeys;
use crate::security::jwt::JwtProvider;
use crate::security::{Authenticator, JwtCheck};
use crate::upstream::{FixedClients, Upstream, service_options};

/// What compiling needs from the gateway.
#[derive(Clone)]
pub(crate) struct Resources {
    /// The SDK, for `lb://` targets; none without a registry.
    pub(crate) sdk: Option<msakit::Client>,
    pub(crate) fixed: FixedClients,
    /// For JWKS documents.
    pub(crate) jwks_http: reqwest::Client,
    pub(crate) shared_counters: Option<SharedCounters>,
    /// A route's body limit unless it says otherwise.
    pub(crate) default_max_body: u64,
    /// Where routes' latency histograms are registered.
    pub(crate) metrics: msakit_server_kit::ServerMetrics,
}

/// A route ready to serve.
pub(crate) struct Route {
    pub(crate) spec: RouteSpec,
    predicates: Predicates,
    pub(crate) filters: Filters,
    pub(crate) upstream: Upstream,
    pub(crate) auth: Option<Authenticator>,
    pub(crate) limiter: Option<Arc<RouteLimiter>>,
    pub(crate) cors: Option<CorsLayer>,
    pub(crate) counters: Arc<RouteCounters>,
    /// Headers only the gateway sets (the client id, every route's claim headers): a client's
    /// own are removed on every route.
    pub(crate) asserted: Arc<Vec<HeaderName>>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("id", &self.spec.id)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// The routes in force, in the order they are tried.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    routes: Vec<Arc<Route>>,
    providers: HashMap<String, Arc<JwtProvider>>,
    /// The set compiled (API keys included: never shown as such).
    pub(crate) set: RouteSet,
}

impl RouteTable {
    /// Compiles `set`, carrying over from `previous` what did not change.
    pub(crate) fn compile(
        set: &RouteSet,
        resources: &Resources,
        previous: Option<&RouteTable>,
    ) -> Result<Self, RouteError> {
        let api_keys = Arc::new(ApiKeys::new(&set.api_keys).map_err(RouteError::ApiKeys)?);
        let mut providers = HashMap::new();
        for (name, spec) in &set.jwt_providers {
            let day = std::time::Duration::from_secs(86_400);
            if spec.refresh > day || spec.leeway > day || spec.refresh.is_zero() {
                return Err(RouteError::Invalid {
                    route: format!("jwt_providers.{name}"),
                    reason: "refresh is above zero and at most 1 day; leeway at most 1 day".into(),
                });
            }
            reqwest::Url::parse(&spec.jwks_url).map_err(|e| RouteError::Invalid {
                route: format!("jwt_providers.{name}"),
                reason: format!("jwks_url: {e}"),
            })?;
            let kept = previous
                .and_then(|p| p.providers.get(name))
                .filter(|p| p.spec() == spec)
                .cloned();
            let provider = kept.unwrap_or_else(|| {
                Arc::new(JwtProvider::new(spec.clone(), resources.jwks_http.clone()))
            });
            providers.insert(name.clone(), provider);
        }
        let old: HashMap<&str, &Arc<Route>> = previous
            .map(|p| p.routes.iter().map(|r| (r.spec.id.as_str(), r)).collect())
            .unwrap_or_default();
        let mut asserted = vec![crate::security::CLIENT_ID.clone()];
        for spec in &set.routes {
            let claims = spec.auth.iter().flat_map(|a| a.jwt.iter());
            for header in claims.flat_map(|jwt| jwt.claims_to_headers.values()) {
                if let Ok(name) = HeaderName::from_bytes(header.as_bytes()) {
                    asserted.push(name);
                }
            }
        }
        let asserted = Arc::new(asserted);
        let mut routes = Vec::with_capacity(set.routes.len());
        let mut ids = std::collections::HashSet::new();
        for spec in &set.routes {
            if !ids.insert(spec.id.as_str()) {
                return Err(RouteError::DuplicateId(spec.id.clone()));
            }
            let before = old.get(spec.id.as_str()).copied();
            let mut route = compile_route(spec, resources, &api_keys, &providers, before)?;
            route.asserted = Arc::clone(&asserted);
            routes.push(Arc::new(route));
        }
        // Lower `order` first; the sort is stable, so equal ones keep the order written.
        routes.sort_by_key(|r| r.spec.order);
        Ok(Self {
            routes,
            providers,
            set: set.clone(),
        })
    }

    /// The first route that takes this request.
    pub(crate) fn find(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        host: Option<&str>,
    ) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| r.predicates.matches(method, path, headers, host))
    }

    /// The routes, in the order they are tried.
    pub(crate) fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Forgets idle rate-limit keys.
    pub(crate) fn forget_idle(&self) {
        for route in &self.routes {
            if let Some(limiter) = &route.limiter {
                limiter.forget_idle();
            }
        }
    }
}

fn compile_route(
    spec: &RouteSpec,
    resources: &Resources,
    api_keys: &Arc<ApiKeys>,
    providers: &HashMap<String, Arc<JwtProvider>>,
    before: Option<&Arc<Route>>,
) -> Result<Route, RouteError> {
    let id = spec.id.as_str();
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(RouteError::invalid(
            id,
            "an id is 1–128 letters, digits, '-', '_' or '.'",
        ));
    }
    let predicates = Predicates::compile(id, &spec.predicates)?;
    let filters = Filters::compile(id, &spec.filters, resources.default_max_body)?;
    let upstream = match before {
        Some(before) if before.spec.uri == spec.uri && before.spec.call == spec.call => {
            before.upstream.clone()
        }
        _ => upstream(spec, resources)?,
    };
    let auth = spec
        .auth
        .as_ref()
        .map(|auth| {
            if !auth.api_key && auth.jwt.is_none() {
                return Err(RouteError::invalid(
                    id,
                    "auth names neither api_key nor jwt",
                ));
            }
            let jwt = auth
                .jwt
                .as_ref()
                .map(|jwt| {
                    let provider = providers.get(&jwt.provider).ok_or_else(|| {
                        RouteError::invalid(id, format!("no JWT provider {:?}", jwt.provider))
                    })?;
                    let claims_to_headers = jwt
                        .claims_to_headers
                        .iter()
                        .map(|(claim, header)| {
                            HeaderName::from_bytes(header.as_bytes())
                                .map(|h| (claim.clone(), h))
                                .map_err(|_| {
                                    RouteError::invalid(id, format!("bad header name {header:?}"))
                                })
                        })
                        .collect::<Result<_, _>>()?;
                    Ok::<_, RouteError>(JwtCheck {
                        provider: Arc::clone(provider),
                        claims_to_headers,
                    })
                })
                .transpose()?;
            Ok(Authenticator {
                api_keys: auth.api_key.then(|| Arc::clone(api_keys)),
                jwt,
            })
        })
        .transpose()?;
    let limiter = match (&spec.rate_limit, before.and_then(|b| b.limiter.as_ref())) {
        (None, _) => None,
        (Some(limit), Some(kept)) if kept.spec() == limit => Some(Arc::clone(kept)),
        (Some(limit), _) => Some(Arc::new(
            RouteLimiter::new(id, limit, resources.shared_counters.as_ref())
                .map_err(|e| RouteError::invalid(id, e))?,
        )),
    };
    let cors = spec
        .cors
        .as_ref()
        .map(|cors| cors_layer(id, cors, predicates.methods()))
        .transpose()?;
    let counters = before.map_or_else(
        || Arc::new(RouteCounters::new(id, &resources.metrics)),
        |b| Arc::clone(&b.counters),
    );
    Ok(Route {
        spec: spec.clone(),
        predicates,
        filters,
        upstream,
        auth,
        limiter,
        cors,
        counters,
        asserted: Arc::default(),
    })
}

fn upstream(spec: &RouteSpec, resources: &Resources) -> Result<Upstream, RouteError> {
    let id = spec.id.as_str();
    const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);
    if spec.call.deadline > DAY || spec.call.timeout > DAY || spec.call.max_attempts > 10 {
        return Err(RouteError::invalid(
            id,
            "call: timeout and deadline at most 1 day, max_attempts at most 10",
        ));
    }
    if spec.call.max_attempts == 0 || spec.call.timeout.is_zero() || spec.call.deadline.is_zero() {
        return Err(RouteError::invalid(
            id,
            "call: max_attempts, timeout and deadline must be above zero",
        ));
    }
    if let Some(service) = spec.uri.strip_prefix("lb://") {
        if service.is_empty() || service.contains(['/', '?', '#']) {
            return Err(RouteError::invalid(
                id,
                "lb:// names a service, and nothing else",
            ));
        }
        let sdk = resources.sdk.as_ref().ok_or_else(|| {
            RouteError::invalid(id, "lb:// needs the gateway's registry (`registry:`)")
        })?;
        let client = sdk
            .service_client(service_options(&spec.call))
            .map_err(|e| RouteError::invalid(id, e))?;
        return Ok(Upstream::Service {
            name: service.to_owned(),
            client,
        });
    }
    let base =
        reqwest::Url::parse(&spec.uri).map_err(|e| RouteError::invalid(id, format!("uri: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") || base.host().is_none() || base.query().is_some()
    {
        return Err(RouteError::invalid(
            id,
            "uri is lb://service or http(s)://host[:port][/path]",
        ));
    }
    Ok(Upstream::Fixed {
        base,
        http: resources.fixed.get(spec.call.protocol),
        http1: resources.fixed.http1(),
        call: spec.call.clone(),
    })
}

fn cors_layer(
    id: &str,
    spec: &CorsSpec,
    route_methods: &[Method],
) -> Result<CorsLayer, RouteError> {
    let any_origin = spec.allowed_origins.iter().any(|o| o == "*");
    if any_origin && spec.allow_credentials {
        return Err(RouteError::invalid(
            id,
            "cors: '*' origins cannot allow credentials",
        ));
    }
    if spec.allowed_origins.is_empty() {
        return Err(RouteError::invalid(id, "cors: allowed_origins is empty"));
    }
    let values = |what: &str, items: &[String]| {
        items
            .iter()
            .map(|i| {
                HeaderValue::from_str(i)
                    .map_err(|_| RouteError::invalid(id, format!("cors: bad {what} {i:?}")))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let names = |what: &str, items: &[String]| {
        items
            .iter()
            .map(|i| {
                if i == "*" {
                    return Err(RouteError::invalid(
                        id,
                        format!("cors: name the {what}, '*' is not accepted"),
                    ));
                }
                HeaderName::from_bytes(i.as_bytes())
                    .map_err(|_| RouteError::invalid(id, format!("cors: bad {what} {i:?}")))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let methods: Vec<Method> = if spec.allowed_methods.is_empty() {
        if route_methods.is_empty() {
            vec![Method::GET, Method::HEAD, Method::POST]
        } else {
            route_methods.to_vec()
        }
    } else {
        spec.allowed_methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| RouteError::invalid(id, format!("cors: bad method {m:?}")))
            })
            .collect::<Result<_, _>>()?
    };
    let mut layer = CorsLayer::new()
        .allow_origin(if any_origin {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(values("origin", &spec.allowed_origins)?)
        })
        .allow_methods(methods)
        .allow_headers(names("header", &spec.allowed_headers)?)
        .expose_headers(names("header", &spec.exposed_headers)?)
        .allow_credentials(spec.allow_credentials);
    if let Some(max_age) = spec.max_age {
        layer = layer.max_age(max_age);
    }
    Ok(layer)
}
