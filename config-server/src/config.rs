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

/// Command-line flags; each can also be set with its `MSAKIT_CONFIG_*` environment variable.
/// A flag beats its variable, which beats the config file.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "msakit-config-server",
    version,
    about = "The msakit config server"
)]
pub struct Cli {
    /// YAML config file.
    #[arg(long, env = "MSAKIT_CONFIG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:8888].
    #[arg(long, env = "MSAKIT_CONFIG_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where documents live [default: ./data/config].
    #[arg(long, env = "MSAKIT_CONFIG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
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
    /// Open connections at most; one more is answered 503 and closed.
    #[arg(long, env = "MSAKIT_CONFIG_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Serve HTTPS with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long, env = "MSAKIT_CONFIG_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "MSAKIT_CONFIG_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, env = "MSAKIT_CONFIG_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Run as this node of a cluster (needs `--peers`).
    #[arg(long, env = "MSAKIT_CONFIG_NODE_ID")]
    pub node_id: Option<u64>,
    /// The cluster's initial members: `1=host:port,2=host:port,3=host:port`.
    #[arg(long, env = "MSAKIT_CONFIG_PEERS", value_parser = msakit_raft::parse_peers)]
    pub peers: Option<std::collections::BTreeMap<u64, String>>,
    /// The token nodes present to each other.
    #[arg(long, env = "MSAKIT_CONFIG_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "MSAKIT_CONFIG_LOG_FORMAT", default_value = "pretty")]
    pub log_format: msakit_server_kit::LogFormat,
}

impl Cli {
    /// The configuration: the file (if any), then the flags and variables over it; validated.
    pub fn resolve(&self) -> Result<ConfigServerConfig, ServerConfigError> {
        let mut config = match &self.config {
            Some(path) => ConfigServerConfig::from_file(path)?,
            None => ConfigServerConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
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
        if let Some(max) = self.max_connections {
            config.connections.max_connections = max;
        }
        config.cluster = ClusterConfig::overlay(
            config.cluster.take(),
            self.node_id,
            self.peers.as_ref(),
            self.cluster_token.as_deref(),
        );
        config.tls = msakit_server_kit::TlsConfig::overlay(
            config.tls.take(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )
        .map_err(|reason| ServerConfigError::Invalid {
            field: "tls",
            reason: reason.into(),
        })?;
        config.validate()?;
        Ok(config)
    }
}
