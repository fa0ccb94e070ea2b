//! The config server's settings: one struct read from a YAML file, overridden by `MSAKIT_CONFIG_*`
//! environment variables, overridden in turn by command-line flags. Merged in memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use msakit_raft::ClusterConfig;

/// Everything the config server can be told. Every field has a documented default.
///
/// ```yaml
/// listen: 0.0.0.0:8888
/// data_dir: /var/lib/msakit/config
/// auth:
///   tokens:
///     - { name: ci, token: "…", scopes: [read, write] }
///     - { name: services, token: "…", scopes: [read] }
/// secrets: { key_file: /etc/msakit/config.key }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigServerConfig {
    /// Address to listen on. Default `0.0.0.0:8888`.
    pub listen: SocketAddr,
    /// Where documents and their history live. Default `./data/config`.
    pub data_dir: PathBuf,
    /// A directory in Spring's native layout to serve read-only, reloaded on change. Default none.
    pub native_dir: Option<PathBuf>,
    /// Largest document, in bytes. Default 1 MiB.
    pub max_document_bytes: usize,
    /// Documents per application, at most; creating one more is refused. Default 1,000.
    pub max_documents_per_application: usize,
    /// Who may read and write.
    pub auth: AuthConfig,
    /// The key for `{cipher}` values.
    pub secrets: SecretsConfig,
    /// Watch settings.
    pub watch: WatchConfig,
    /// The Spring Cloud Config API.
    pub spring: SpringConfig,
    /// How long shutdown waits for requests in flight. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Open connections at most (default 10,000) and the time a client has to send its request
    /// headers (default 10 s).
    pub connections: msakit_server_kit::ConnectionLimits,
    /// Serve HTTPS with this certificate and key (and, with `client_ca`, require client
    /// certificates). Default none: plain HTTP.
    pub tls: Option<msakit_server_kit::TlsConfig>,
    /// Run as one node of a Raft cluster (openraft). Default none: a single node.
    pub cluster: Option<ClusterConfig>,
    /// Where traces go (the `OTEL_*` variables win). Default: nowhere.
    pub telemetry: msakit_server_kit::TelemetryConfig,
}

/// Authentication. With no tokens configured, everything is open and writes are by `anonymous`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted tokens, as `Authorization: Bearer <token>` or the password of HTTP Basic.
    pub tokens: Vec<TokenConfig>,
}

/// One token: who it is (the author recorded on writes) and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The identity, recorded as the author of writes.
    pub name: String,
    /// The secret; never logged.
    pub token: String,
    /// `read`, `write` or both.
    pub scopes: Vec<Scope>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read documents, history and resolved configuration; watch; see secrets decrypted.
    Read,
    /// Write, delete, roll back, set schemas; `/encrypt` and `/decrypt`.
    Write,
}

/// Where the secrets key comes from: 32 bytes, base64-encoded, from a file or the
/// `MSAKIT_CONFIG_ENCRYPT_KEY` variable. Without a key, `{cipher}` values are refused.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// A file holding the base64 key.
    pub key_file: Option<PathBuf>,
    /// The base64 key itself (prefer the file or the environment variable).
    #[serde(skip_serializing)]
    pub key: Option<String>,
}

/// Watch settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Open watch streams per client address; one more is refused with 429. Default 256.
    pub max_per_client: usize,
    /// Comment lines on idle SSE streams. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Longest `wait` a blocking query may ask for. Default 10 min; the default wait is 5 min.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for ConfigServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8888)),
            data_dir: PathBuf::from("./data/config"),
            native_dir: None,
            max_document_bytes: 1024 * 1024,
            max_documents_per_application: 1000,
            auth: AuthConfig::default(),
            secrets: SecretsConfig::default(),
            watch: WatchConfig::default(),
            spring: SpringConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            connections: msakit_server_kit::ConnectionLimits::default(),
            tls: None,
            cluster: None,
            telemetry: msakit_server_kit::TelemetryConfig::default(),
        }
    }
}

/// Spring Cloud Config's HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpringConfig {
    /// Where it is mounted: `""` (the root, as Spring serves it) or a prefix such as `/spring`.
    pub prefix: String,
    /// Answer an application with no documents with an empty Environment (Spring's default)
    /// rather than 404.
    pub accept_empty: bool,
}

impl Default for SpringConfig {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            accept_empty: true,
        }
    }
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            max_per_client: 256,
            keep_alive: Duration::from_secs(15),
            max_wait: Duration::from_secs(600),
        }
    }
}

/// A setting that is out of range, or a config file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ServerConfigError {
    /// The config file cannot be used.
    #[error(transparent)]
    File(#[from] msakit_server_kit::ConfigFileError),
    /// A file named by the config cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value is out of range.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field, as spelled in YAML.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl ConfigServerConfig {
    /// Reads a YAML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ServerConfigError> {
        Ok(msakit_server_kit::read_yaml_file(path)?)
    }

    /// Checks every value; the error names the first field out of range.
    pub fn validate(&self) -> Result<(), ServerConfigError> {
        let invalid = |field, reason: &str| {
            Err(ServerConfigError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        if let Err(reason) = self.telemetry.check() {
            return invalid("telemetry", &reason);
        }
        if self.connections.max_connections == 0 {
            return invalid("connections.max_connections", "must be at least 1");
        }
        if self.connections.header_read_timeout.is_zero() {
            return invalid(
                "connections.header_read_timeout",
                "must be greater than zero",
            );
        }
        if self.max_documents_per_application == 0 {
            return invalid("max_documents_per_application", "must be at least 1");
        }
        if self.max_document_bytes < 1024 {
            return invalid("max_document_bytes", "must be at least 1024");
        }
        for token in &self.auth.tokens {
            if token.token.len() < 8 {
                return invalid("auth.tokens", "every token must be at least 8 characters");
            }
            if token.scopes.is_empty() || token.name.is_empty() {
                return invalid(
                    "auth.tokens",
                    "every token needs a name and at least one scope",
                );
            }
        }
        let prefix = &self.spring.prefix;
        if !prefix.is_empty()
            && (!prefix.starts_with('/') || prefix.ends_with('/') || prefix.starts_with("/v1"))
        {
            return invalid(
                "spring.prefix",
                "must be empty or like /spring (not under /v1)",
            );
        }
        if self.watch.keep_alive.is_zero() {
            return invalid("watch.keep_alive", "must be greater than zero");
        }
        if let Some(cluster) = &self.cluster {
            if let Err((field, message)) = cluster.check(msakit_raft::ServerSecurity {
                requires_tokens: !self.auth.tokens.is_empty(),
                serves_tls: self.tls.is_some(),
            }) {
                return invalid(field, message);
            }
            if self.native_dir.is_some() {
                return invalid(
                    "cluster",
                    "a native directory is served by a single node, not a cluster",
                );
            }
        }
        Ok(())
    }

    /// The secrets key text, from the config or its file, if any.
    pub(crate) fn secrets_key(&self) -> Result<Option<String>, ServerConfigError> {
        if let Some(key) = &self.secrets.key {
            return Ok(Some(key.clone()));
        }
        match &self.secrets.key_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|k| Some(k.trim().to_owned()))
                .map_err(|source| ServerConfigError::Read {
                    path: path.clone(),
                    source,
                }),
            None => Ok(None),
        }
    }
}

msakit_server_kit::env_names!(
    /// The config server's environment variables: `MSAKIT_CONFIG_*`.
    pub ConfigServerEnv,
    "MSAKIT_CONFIG"
);

/// Command-line flags; each can also be set with its `MSAKIT_CONFIG_*` environment variable.
/// A flag beats its variable, which beats the config file.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "msakit-config-server",
    version,
    about = "The msakit config server",
    mut_arg("listen", |a| a.help("Address to listen on [default: 0.0.0.0:8888]")),
    mut_arg("data_dir", |a| a.help("Where documents live [default: ./data/config]"))
)]
pub struct Cli {
    /// What every server takes: config file, address, data directory, limits, TLS, logs.
    #[command(flatten)]
    pub serve: msakit_server_kit::ServeFlags<ConfigServerEnv>,
    /// The secrets key, base64 of 32 bytes.
    #[arg(long, env = "MSAKIT_CONFIG_ENCRYPT_KEY", hide_env_values = true)]
    pub encrypt_key: Option<String>,
    /// A file holding the secrets key.
    #[arg(long, env = "MSAKIT_CONFIG_ENCRYPT_KEY_FILE")]
    pub encrypt_key_file: Option<PathBuf>,
    /// Serve this directory (Spring's native layout) read-only, reloading on change.
    #[arg(long, env = "MSAKIT_CONFIG_NATIVE_DIR")]
    pub native_dir: Option<PathBuf>,
    /// Mount Spring Cloud Config's API under this prefix instead of the root.
    #[arg(long, env = "MSAKIT_CONFIG_SPRING_PREFIX")]
    pub spring_prefix: Option<String>,
    /// The cluster's node id, peers and token.
    #[command(flatten)]
    pub cluster: msakit_raft::ClusterFlags<ConfigServerEnv>,
}

impl Cli {
    /// The configuration: the file (if any), then the flags and variables over it; validated.
    pub fn resolve(&self) -> Result<ConfigServerConfig, ServerConfigError> {
        let mut config = match &self.serve.config {
            Some(path) => ConfigServerConfig::from_file(path)?,
            None => ConfigServerConfig::default(),
        };
        self.serve
            .overlay(&mut config.listen, &mut config.connections, &mut config.tls)
            .map_err(|reason| ServerConfigError::Invalid {
                field: "tls",
                reason: reason.into(),
            })?;
        if let Some(dir) = &self.serve.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(key) = &self.encrypt_key {
            config.secrets.key = Some(key.clone());
        }
        if let Some(file) = &self.encrypt_key_file {
            config.secrets.key_file = Some(file.clone());
        }
        if let Some(dir) = &self.native_dir {
            config.native_dir = Some(dir.clone());
        }
        if let Some(prefix) = &self.spring_prefix {
            config.spring.prefix = prefix.clone();
        }
        config.cluster = self.cluster.overlay(config.cluster.take());
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_reads_its_documented_variable() {
        use clap::CommandFactory;
        let seen = msakit_server_kit::flag_variables(&Cli::command());
        let expected = [
            ("cluster_token", "MSAKIT_CONFIG_CLUSTER_TOKEN"),
            ("config", "MSAKIT_CONFIG_CONFIG"),
            ("data_dir", "MSAKIT_CONFIG_DATA_DIR"),
            ("encrypt_key", "MSAKIT_CONFIG_ENCRYPT_KEY"),
            ("encrypt_key_file", "MSAKIT_CONFIG_ENCRYPT_KEY_FILE"),
            ("listen", "MSAKIT_CONFIG_LISTEN"),
            ("log_format", "MSAKIT_CONFIG_LOG_FORMAT"),
            ("max_connections", "MSAKIT_CONFIG_MAX_CONNECTIONS"),
            ("native_dir", "MSAKIT_CONFIG_NATIVE_DIR"),
            ("node_id", "MSAKIT_CONFIG_NODE_ID"),
            ("peers", "MSAKIT_CONFIG_PEERS"),
            ("spring_prefix", "MSAKIT_CONFIG_SPRING_PREFIX"),
            ("tls_cert", "MSAKIT_CONFIG_TLS_CERT"),
            ("tls_client_ca", "MSAKIT_CONFIG_TLS_CLIENT_CA"),
            ("tls_key", "MSAKIT_CONFIG_TLS_KEY"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, e)| (a.to_string(), e.to_string()))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "listen: 127.0.0.1:9000\nspring: { prefix: /cfg }\n").unwrap();
        let cli = <Cli as clap::Parser>::try_parse_from([
            "msakit-config-server",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9100",
            "--max-connections",
            "9",
        ])
        .unwrap();
        let config = cli.resolve().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(config.connections.max_connections, 9);
        assert_eq!(config.spring.prefix, "/cfg");
    }
}
