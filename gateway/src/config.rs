//! The gateway's settings: one struct read from a YAML file, overridden by `MSAKIT_GATEWAY_*`
//! environment variables, overridden in turn by command-line flags. The routes are either in
//! the file itself (`routes:`), in a file of their own watched for changes (`routes_file:`), or
//! in a config-server document followed live (`routes_from_config:`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::routes::spec::RouteSet;

/// Everything the gateway can be told.
///
/// ```yaml
/// listen: 0.0.0.0:8080
/// admin_listen: 127.0.0.1:8081
/// registry: [http://127.0.0.1:8761]
/// routes_file: /etc/msakit/routes.yaml
/// redis: { url: redis://127.0.0.1:6379 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where clients come in. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// The admin API, `/health`, `/metrics` and `/openapi.json`. Default `127.0.0.1:8081` (not
    /// reachable from other machines unless said).
    pub admin_listen: SocketAddr,
    /// The registry's base URLs, for `lb://` routes.
    pub registry: Vec<String>,
    /// The config server's base URLs, for `routes_from_config`.
    pub config_server: Vec<String>,
    /// Token presented to the registry and the config server. Never logged.
    pub token: Option<String>,
    /// Routes written here (when neither `routes_file` nor `routes_from_config` is given).
    pub routes: RouteSet,
    /// A YAML file of routes, read again when it changes.
    pub routes_file: Option<PathBuf>,
    /// A config-server document of routes, followed live.
    pub routes_from_config: Option<RoutesFromConfig>,
    /// Shares rate-limit counters with every gateway configured with the same Redis.
    pub redis: Option<RedisConfig>,
    /// Who may use the admin API.
    pub admin: AdminConfig,
    /// A route's largest request body unless it says otherwise. Default 100 MiB.
    pub max_body_bytes: u64,
    /// Where the last good routes from the config server are kept (so the gateway starts while
    /// it is down).
    pub data_dir: Option<PathBuf>,
    /// How long shutdown waits for requests and streams in flight. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Open connections at most and the time a client has to send its request headers.
    pub connections: msakit_server_kit::ConnectionLimits,
    /// Serve HTTPS (HTTP/2 by ALPN) with this certificate and key.
    pub tls: Option<msakit_server_kit::TlsConfig>,
    /// Where traces go (the `OTEL_*` variables win). Default: nowhere.
    pub telemetry: msakit_server_kit::TelemetryConfig,
}

/// A config-server document of routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFromConfig {
    /// The application. Default `gateway`.
    #[serde(default = "default_application")]
    pub application: String,
    /// The profiles. Default `[default]`.
    #[serde(default = "default_profiles")]
    pub profiles: Vec<String>,
    /// The label. Default the server's.
    #[serde(default)]
    pub label: Option<String>,
}

fn default_application() -> String {
    "gateway".into()
}

fn default_profiles() -> Vec<String> {
    vec!["default".into()]
}

/// Redis for shared rate limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Key prefix. Default `msakit:gateway`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "msakit:gateway".into()
}

/// The admin API's access.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer tokens accepted by `/admin/**`; none: open (it listens on localhost by default).
    /// Never logged.
    pub tokens: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            registry: Vec::new(),
            config_server: Vec::new(),
            token: None,
            routes: RouteSet::default(),
            routes_file: None,
            routes_from_config: None,
            redis: None,
            admin: AdminConfig::default(),
            max_body_bytes: 100 * 1024 * 1024,
            data_dir: None,
            shutdown_grace: Duration::from_secs(10),
            connections: msakit_server_kit::ConnectionLimits::default(),
            tls: None,
            telemetry: msakit_server_kit::TelemetryConfig::default(),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GatewayConfigError {
    /// The file cannot be read.
    #[error(transparent)]
    File(#[from] msakit_server_kit::ConfigFileError),
    /// A setting is wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl GatewayConfig {
    /// Checks what can be checked before starting.
    pub fn validate(&self) -> Result<(), GatewayConfigError> {
        let invalid = |field, reason: &str| {
            Err(GatewayConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.routes_file.is_some() && self.routes_from_config.is_some() {
            return invalid(
                "routes_file",
                "give routes_file or routes_from_config, not both",
            );
        }
        if (self.routes_file.is_some() || self.routes_from_config.is_some())
            && self.routes != RouteSet::default()
        {
            return invalid(
                "routes",
                "routes come from routes_file or routes_from_config; leave routes empty",
            );
        }
        if self.routes_from_config.is_some() && self.config_server.is_empty() {
            return invalid(
                "config_server",
                "routes_from_config needs the config server's URLs",
            );
        }
        if let Err(reason) = self.telemetry.check() {
            return invalid("telemetry", &reason);
        }
        if self.max_body_bytes == 0 {
            return invalid("max_body_bytes", "must be above zero");
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return invalid("admin_listen", "must differ from listen");
        }
        Ok(())
    }
}

msakit_server_kit::env_names!(
    /// The gateway's environment variables: `MSAKIT_GATEWAY_*`.
    pub GatewayEnv,
    "MSAKIT_GATEWAY"
);

/// `msakit-gateway`'s command line; every flag also reads an `MSAKIT_GATEWAY_*` variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "msakit-gateway", version, about = "msakit's API gateway")]
pub struct Cli {
    /// What every server takes: config file, address, data directory, limits, TLS, logs.
    #[command(flatten)]
    pub serve: msakit_server_kit::ServeFlags<GatewayEnv>,
    /// Address of the admin API.
    #[arg(long, env = "MSAKIT_GATEWAY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// The registry's base URLs (comma-separated), for `lb://` routes.
    #[arg(long, env = "MSAKIT_GATEWAY_REGISTRY", value_delimiter = ',')]
    pub registry: Option<Vec<String>>,
    /// The config server's base URLs (comma-separated).
    #[arg(long, env = "MSAKIT_GATEWAY_CONFIG_SERVER", value_delimiter = ',')]
    pub config_server: Option<Vec<String>>,
    /// A YAML file of routes, read again when it changes.
    #[arg(long, env = "MSAKIT_GATEWAY_ROUTES_FILE")]
    pub routes_file: Option<PathBuf>,
    /// Follow the routes in this config-server application (profile `default`).
    #[arg(long, env = "MSAKIT_GATEWAY_ROUTES_APPLICATION")]
    pub routes_application: Option<String>,
    /// Redis URL for shared rate limits.
    #[arg(long, env = "MSAKIT_GATEWAY_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// Comma-separated admin API tokens.
    #[arg(
        long,
        env = "MSAKIT_GATEWAY_ADMIN_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admin_tokens: Option<Vec<String>>,
}

impl Cli {
    /// The configuration: the file (if any), then the flags and variables over it; validated.
    pub fn resolve(&self) -> Result<GatewayConfig, GatewayConfigError> {
        let mut config = match &self.serve.config {
            Some(path) => msakit_server_kit::read_yaml_file(path)?,
            None => GatewayConfig::default(),
        };
        self.serve
            .overlay(&mut config.listen, &mut config.connections, &mut config.tls)
            .map_err(|reason| GatewayConfigError::Invalid {
                field: "tls",
                reason: reason.into(),
            })?;
        if let Some(dir) = &self.serve.data_dir {
            config.data_dir = Some(dir.clone());
        }
        if let Some(address) = self.admin_listen {
            config.admin_listen = address;
        }
        if let Some(urls) = &self.registry {
            config.registry.clone_from(urls);
        }
        if let Some(urls) = &self.config_server {
            config.config_server.clone_from(urls);
        }
        if let Some(file) = &self.routes_file {
            config.routes_file = Some(file.clone());
        }
        if let Some(application) = &self.routes_application {
            config.routes_from_config = Some(RoutesFromConfig {
                application: application.clone(),
                profiles: default_profiles(),
                label: None,
            });
        }
        if let Some(url) = &self.redis {
            config.redis = Some(RedisConfig {
                url: url.clone(),
                prefix: config
                    .redis
                    .take()
                    .map_or_else(default_prefix, |r| r.prefix),
            });
        }
        if let Some(tokens) = &self.admin_tokens {
            config.admin.tokens = tokens.iter().filter(|t| !t.is_empty()).cloned().collect();
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn every_flag_reads_its_documented_variable() {
        let seen = msakit_server_kit::flag_variables(&Cli::command());
        let expected = [
            ("admin_listen", "MSAKIT_GATEWAY_ADMIN_LISTEN"),
            ("admin_tokens", "MSAKIT_GATEWAY_ADMIN_TOKENS"),
            ("config", "MSAKIT_GATEWAY_CONFIG"),
            ("config_server", "MSAKIT_GATEWAY_CONFIG_SERVER"),
            ("data_dir", "MSAKIT_GATEWAY_DATA_DIR"),
            ("listen", "MSAKIT_GATEWAY_LISTEN"),
            ("log_format", "MSAKIT_GATEWAY_LOG_FORMAT"),
            ("max_connections", "MSAKIT_GATEWAY_MAX_CONNECTIONS"),
            ("redis", "MSAKIT_GATEWAY_REDIS"),
            ("registry", "MSAKIT_GATEWAY_REGISTRY"),
            ("routes_application", "MSAKIT_GATEWAY_ROUTES_APPLICATION"),
            ("routes_file", "MSAKIT_GATEWAY_ROUTES_FILE"),
            ("tls_cert", "MSAKIT_GATEWAY_TLS_CERT"),
            ("tls_client_ca", "MSAKIT_GATEWAY_TLS_CLIENT_CA"),
            ("tls_key", "MSAKIT_GATEWAY_TLS_KEY"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn file_then_flags_and_sources_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:9000\nroutes_file: /x/routes.yaml\nredis: { url: redis://a, prefix: p }\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "msakit-gateway",
            "--config",
            file.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:9001",
            "--redis",
            "redis://b",
        ]);
        let config = cli.resolve().unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.admin_listen.port(), 9001);
        assert_eq!(
            config.redis,
            Some(RedisConfig {
                url: "redis://b".into(),
                prefix: "p".into()
            })
        );
        let both = Cli::parse_from([
            "msakit-gateway",
            "--config",
            file.to_str().unwrap(),
            "--routes-application",
            "gateway",
            "--config-server",
            "http://c",
        ]);
        assert!(both.resolve().is_err());
        std::fs::write(&file, "listen: 127.0.0.1:9000\nunknown: 1\n").unwrap();
        assert!(
            Cli::parse_from(["msakit-gateway", "--config", file.to_str().unwrap()])
                .resolve()
                .is_err()
        );
    }
}
