//! `msakit-gateway`: the single entry point of a microservice architecture. Routes requests by
//! path, host, method and headers to services found in the registry (`lb://order`, balanced,
//! retried and broken by the SDK) or to fixed URLs; checks API keys and JWTs (keys from a
//! JWKS); answers CORS; limits rates per client, shared through Redis across gateways; streams
//! bodies, SSE and WebSocket through on HTTP/1.1 and HTTP/2; and reloads its routes live from a
//! file or a config-server document, refusing a set that does not compile.

mod admin;
mod config;
mod counters;
mod live;
mod proxy;
mod rate_limit;
pub mod routes;
mod security;
mod server;
mod source;
mod upstream;

pub use config::{
    AdminConfig, Cli, GatewayConfig, GatewayConfigError, GatewayEnv, RedisConfig, RoutesFromConfig,
};
pub use msakit_server_kit::shutdown_signal;
pub use routes::RouteError;
pub use security::jwt::JwtError;
pub use server::{GatewayError, run};
pub use source::SourceError;
