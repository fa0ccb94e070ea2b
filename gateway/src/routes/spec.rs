//! The route set as written in YAML (a file, or a config-server document): routes with their
//! predicates, filters, security, limits and call settings, plus the API keys and JWT providers
//! routes refer to. Plain data; [`RouteTable::compile`](super::RouteTable::compile) checks it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything that reloads live.
///
/// ```yaml
/// routes:
///   - id: orders
///     uri: lb://order
///     predicates: { path: [/api/orders/**], methods: [GET, POST] }
///     filters: { strip_prefix: 1 }
///     auth: { api_key: true }
///     rate_limit: { requests: 100, period: 1s, burst: 20 }
/// api_keys: [{ client: mobile, key: "…" }]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteSet {
    /// Tried by `order`, then as written; the first whose predicates all match serves.
    pub routes: Vec<RouteSpec>,
    /// Accepted API keys, each naming its client (`x-api-key` or `Authorization: Bearer`).
    pub api_keys: Vec<ApiKeySpec>,
    /// JWT issuers by name, for routes' `auth.jwt`.
    pub jwt_providers: BTreeMap<String, JwtProviderSpec>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Unique; names the route in metrics, logs and the admin API.
    pub id: String,
    /// `lb://service` (through the registry) or `http(s)://host:port[/base]`.
    pub uri: String,
    /// Lower first; equal ones keep the order written. Default 0.
    #[serde(default)]
    pub order: i32,
    /// What a request must look like.
    #[serde(default)]
    pub predicates: PredicatesSpec,
    /// What changes on the way.
    #[serde(default)]
    pub filters: FiltersSpec,
    /// Who may call; none: anyone.
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    /// How often.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Cross-origin calls from browsers.
    #[serde(default)]
    pub cors: Option<CorsSpec>,
    /// Timeouts, attempts and the breaker of calls to the target.
    #[serde(default)]
    pub call: CallSpec,
}

/// A request's predicates; all given must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PredicatesSpec {
    /// Path patterns, any of which: literal segments, `*` (one segment), `{name}` (one segment,
    /// captured for `rewrite_path`), `**` (the rest, last only).
    pub path: Vec<String>,
    /// Host names, any of which (`*.example.com` matches one or more labels in front); the
    /// port is ignored.
    pub host: Vec<String>,
    /// Methods, any of which; none: every method.
    pub methods: Vec<String>,
    /// Headers that must be present, each matching its regular expression (whole value).
    pub headers: BTreeMap<String, String>,
}

/// The filters, applied in the order listed here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FiltersSpec {
    /// Drops this many leading path segments.
    pub strip_prefix: usize,
    /// Rewrites the path (after `strip_prefix`) with a regular expression.
    pub rewrite_path: Option<RewriteSpec>,
    /// Headers set on the request to the target (replacing any the client sent).
    pub add_request_headers: BTreeMap<String, String>,
    /// Headers removed from the request to the target.
    pub remove_request_headers: Vec<String>,
    /// Headers set on the response to the client.
    pub add_response_headers: BTreeMap<String, String>,
    /// Headers removed from the response to the client.
    pub remove_response_headers: Vec<String>,
    /// Largest request body; a larger one is refused with 413 (by its `Content-Length` before
    /// anything is sent on, or as it streams past the limit). Default: the gateway's.
    pub max_body_bytes: Option<u64>,
}

/// `pattern` → `replacement` (`$1`, `${name}`; a path pattern's `{name}` captures are not
/// involved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteSpec {
    /// A regular expression over the path.
    pub pattern: String,
    /// What replaces it.
    pub replacement: String,
}

/// Who may call a route: any of the schemes given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSpec {
    /// Accept the set's API keys.
    pub api_key: bool,
    /// Accept bearer JWTs of this provider.
    pub jwt: Option<JwtRouteSpec>,
}

/// A route's JWT settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtRouteSpec {
    /// A key of `jwt_providers`.
    pub provider: String,
    /// Claims passed on to the target as headers (claim → header); a client's own headers of
    /// those names are removed first.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
}

/// One API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    /// The client's name: passed on as `x-client-id`, and its rate-limit key. Never the key.
    pub client: String,
    /// The secret. Never logged or shown by the admin API.
    pub key: String,
}

/// Where a JWT provider's keys are and what its tokens must say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtProviderSpec {
    /// The JWKS document's URL.
    pub jwks_url: String,
    /// Required `iss`.
    pub issuer: String,
    /// `aud` must name one of these; none: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The keys are fetched again this often (and at once, at most every 10 s, when a token
    /// names an unknown key). Default 5 min.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub refresh: Duration,
    /// Clock skew allowed on `exp` and `nbf`. Default 30 s.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

/// A rate limit: a token bucket (GCRA) per key, refilled at `requests` per `period`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Sustained requests per `period`.
    pub requests: u32,
    /// Default 1 s.
    #[serde(default = "one_second", with = "humantime_serde")]
    pub period: Duration,
    /// Requests allowed at once. Default: `requests`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// What is counted apart. Default the client (API key's client or JWT subject, else the
    /// address).
    #[serde(default)]
    pub key: RateLimitKey,
    /// Count in Redis, across every gateway configured with it (falls back to counting here
    /// while Redis does not answer). Default true when the gateway has Redis.
    #[serde(default = "default_true")]
    pub shared: bool,
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn default_true() -> bool {
    true
}

/// What a rate limit counts apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// The authenticated client, else the address.
    #[default]
    Client,
    /// The client's address (the first `X-Forwarded-For` entry is not trusted).
    Ip,
    /// The whole route, everyone together.
    Route,
}

/// CORS for a route (tower-http's `CorsLayer`): preflights answered here, never sent on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSpec {
    /// Origins allowed (`*`: any, not with credentials).
    pub allowed_origins: Vec<String>,
    /// Methods allowed; none: the route's, or GET, HEAD, POST.
    pub allowed_methods: Vec<String>,
    /// Request headers allowed.
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read.
    pub exposed_headers: Vec<String>,
    /// Cookies and credentials allowed.
    pub allow_credentials: bool,
    /// How long a preflight's answer may be cached.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

/// How calls to the target behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallSpec {
    /// Time until the target's response headers, per attempt. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts in all for idempotent requests whose body is small enough to replay (on other
    /// instances when the target is `lb://`). Default 2.
    pub max_attempts: u32,
    /// Time for all attempts. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// HTTP version towards a fixed URL: `http1`, `auto` (HTTP/2 when TLS's ALPN agrees) or
    /// `h2c` (HTTP/2 without TLS). Default `http1`. WebSocket handshakes always use HTTP/1.1.
    pub protocol: UpstreamProtocol,
    /// A request carrying this header may be retried whatever its method — say
    /// `idempotency-key`, when the target de-duplicates by it (the IETF draft). Default none:
    /// only idempotent methods are retried.
    pub idempotency_header: Option<String>,
    /// The breaker of an `lb://` target (Resilience4j's settings). Default: the SDK's.
    pub breaker: Option<msakit::resilience::CircuitBreakerConfig>,
}

impl Default for CallSpec {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 2,
            deadline: Duration::from_secs(30),
            protocol: UpstreamProtocol::Http1,
            idempotency_header: None,
            breaker: None,
        }
    }
}

/// The HTTP version spoken to a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/1.1, or HTTP/2 when TLS's ALPN agrees.
    Auto,
    /// HTTP/2 with prior knowledge, without TLS.
    H2c,
}
