//! The registry's settings: one struct read from a YAML file, overridden by `MSAKIT_REGISTRY_*`
//! environment variables, overridden in turn by command-line flags. Merged in memory; the process
//! environment is never modified.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use msakit_raft::ClusterConfig;

/// Everything the registry can be told. Every field has a documented default.
///
/// ```yaml
/// listen: 0.0.0.0:8761
/// data_dir: /var/lib/msakit/registry
/// lease: { default_ttl: 15s, min_ttl: 3s, max_ttl: 5m }
/// self_preservation: { enabled: true, expiring_share: 0.15, window: 1m, min_instances: 10, max_pause: 10m }
/// auth: { tokens: ["s3cret"], protect_reads: false }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Address to listen on. Default `0.0.0.0:8761`.
    pub listen: SocketAddr,
    /// Where registrations are kept across restarts; none keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    /// Lease bounds.
    pub lease: LeaseConfig,
    /// How often expired leases are looked for. Default 250 ms, so an instance disappears within
    /// its TTL plus a quarter second.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Pausing eviction when an abnormal share of instances expires at once.
    pub self_preservation: SelfPreservationConfig,
    /// Input limits.
    pub limits: LimitsConfig,
    /// Who may write (and optionally read).
    pub auth: AuthConfig,
    /// Watch settings.
    pub watch: WatchConfig,
    /// Server-side health checks of instances that declare one.
    pub health_checks: HealthChecksConfig,
    /// How long shutdown waits for requests in flight. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Open connections at most (default 10,000) and the time a client has to send its request
    /// headers (default 10 s).
    pub connections: msakit_server_kit::ConnectionLimits,
    /// Serve HTTPS with this certificate and key (and, with `client_ca`, require client
    /// certificates). Default none: plain HTTP.
    pub tls: Option<msakit_server_kit::TlsConfig>,
    /// Run as one node of a Raft cluster (openraft; needs `data_dir`, where the log lives).
    /// Default none: a single node.
    pub cluster: Option<ClusterConfig>,
    /// Where traces go (the `OTEL_*` variables win). Default: nowhere.
    pub telemetry: msakit_server_kit::TelemetryConfig,
}

/// Lease bounds: an instance asks for a TTL, the registry clamps it into `[min_ttl, max_ttl]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// TTL when the instance asks for none. Default 15 s (heartbeat every 5 s).
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Smallest TTL granted. Default 3 s.
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    /// Largest TTL granted. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
}

/// Self-preservation: when an abnormal share of all instances loses its lease within `window`
/// (those expired now plus those already evicted in the window), the likely cause is a network
/// problem near the registry rather than real deaths, so eviction pauses until renewals recover
/// (or `max_pause` passes). At most about `expiring_share` of the instances are evicted per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfPreservationConfig {
    /// Default true.
    pub enabled: bool,
    /// Share of all instances (0–1) whose leases may run out within `window` before eviction
    /// pauses. Default 0.15 (Eureka's 85% renewal threshold).
    pub expiring_share: f64,
    /// The window over which lost leases are counted. Default 1 min.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Below this many instances the registry always evicts. Default 10.
    pub min_instances: usize,
    /// Eviction resumes after this long even if renewals have not recovered, so instances that
    /// really died do not stay forever. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub max_pause: Duration,
}

/// Input limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Most metadata entries per instance. Default 64.
    pub max_metadata_entries: usize,
    /// Most metadata bytes (keys and values) per instance. Default 8 KiB.
    pub max_metadata_bytes: usize,
    /// Most instances in the whole registry. Default 1,000,000.
    pub max_instances: usize,
}

/// Authentication. With no tokens configured, everything is open.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted tokens, as `Authorization: Bearer <token>` or as the password of HTTP Basic.
    /// Never logged.
    pub tokens: Vec<String>,
    /// Require a token for reads and watches too. Default false.
    pub protect_reads: bool,
}

/// Watch settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Open watch streams per client address; one more is refused with 429. Default 256.
    pub max_per_client: usize,
    /// Comment lines on idle SSE streams, so proxies keep them open. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Longest `wait` a blocking query may ask for. Default 10 min; the default wait is 5 min.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Changes kept for resuming watchers; one that fell further behind gets a fresh snapshot.
    /// Default 10,000.
    pub history: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8761)),
            data_dir: None,
            lease: LeaseConfig::default(),
            sweep_interval: Duration::from_millis(250),
            self_preservation: SelfPreservationConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            watch: WatchConfig::default(),
            health_checks: HealthChecksConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            connections: msakit_server_kit::ConnectionLimits::default(),
            tls: None,
            cluster: None,
            telemetry: msakit_server_kit::TelemetryConfig::default(),
        }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(15),
            min_ttl: Duration::from_secs(3),
            max_ttl: Duration::from_secs(300),
        }
    }
}

impl Default for SelfPreservationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            expiring_share: 0.15,
            window: Duration::from_secs(60),
            min_instances: 10,
            max_pause: Duration::from_secs(600),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_metadata_entries: 64,
            max_metadata_bytes: 8 * 1024,
            max_instances: 1_000_000,
        }
    }
}

/// Server-side health checks (Consul style): instances may ask the registry to probe them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthChecksConfig {
    /// Accept and run checks. Default true; when false, a registration with a check is refused.
    pub enabled: bool,
    /// Shortest probe interval accepted. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
}

impl Default for HealthChecksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_interval: Duration::from_secs(1),
        }
    }
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            max_per_client: 256,
            keep_alive: Duration::from_secs(15),
            max_wait: Duration::from_secs(600),
            history: 10_000,
        }
    }
}

/// A setting that is out of range, or a config file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    /// The config file cannot be used.
    #[error(transparent)]
    File(#[from] msakit_server_kit::ConfigFileError),
    /// A value is out of range.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field, as spelled in YAML.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> RegistryConfigError {
    RegistryConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl RegistryConfig {
    /// Reads a YAML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, RegistryConfigError> {
        Ok(msakit_server_kit::read_yaml_file(path)?)
    }

    /// Checks every value; the error names the first field out of range.
    pub fn validate(&self) -> Result<(), RegistryConfigError> {
        self.telemetry
            .check()
            .map_err(|reason| invalid("telemetry", reason))?;
        if self.connections.max_connections == 0 {
            return Err(invalid("connections.max_connections", "must be at least 1"));
        }
        if self.connections.header_read_timeout.is_zero() {
            return Err(invalid(
                "connections.header_read_timeout",
                "must be greater than zero",
            ));
        }
        let lease = &self.lease;
        if lease.min_ttl.is_zero() {
            return Err(invalid("lease.min_ttl", "must be greater than zero"));
        }
        if lease.min_ttl > lease.max_ttl {
            return Err(invalid("lease.min_ttl", "must not exceed lease.max_ttl"));
        }
        if !(lease.min_ttl..=lease.max_ttl).contains(&lease.default_ttl) {
            return Err(invalid(
                "lease.default_ttl",
                "must lie between lease.min_ttl and lease.max_ttl",
            ));
        }
        if self.sweep_interval.is_zero() || self.sweep_interval > Duration::from_secs(1) {
            return Err(invalid("sweep_interval", "must be between 1 ns and 1 s"));
        }
        let share = self.self_preservation.expiring_share;
        if !(share.is_finite() && share > 0.0 && share <= 1.0) {
            return Err(invalid(
                "self_preservation.expiring_share",
                format!("must be greater than 0 and at most 1, got {share}"),
            ));
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(invalid("limits.max_body_bytes", "must be at least 1024"));
        }
        if self.auth.tokens.iter().any(|t| t.len() < 8) {
            return Err(invalid(
                "auth.tokens",
                "every token must be at least 8 characters",
            ));
        }
        if self.auth.protect_reads && self.auth.tokens.is_empty() {
            return Err(invalid("auth.protect_reads", "needs at least one token"));
        }
        if self.watch.history == 0 {
            return Err(invalid("watch.history", "must be at least 1"));
        }
        if self.watch.keep_alive.is_zero() {
            return Err(invalid("watch.keep_alive", "must be greater than zero"));
        }
        if let Some(cluster) = &self.cluster {
            cluster
                .check(msakit_raft::ServerSecurity {
                    requires_tokens: !self.auth.tokens.is_empty(),
                    serves_tls: self.tls.is_some(),
                })
                .map_err(|(field, reason)| invalid(field, reason))?;
            if self.data_dir.is_none() {
                return Err(invalid(
                    "data_dir",
                    "a cluster node needs a data directory (its Raft log lives there)",
                ));
            }
        }
        Ok(())
    }
}

msakit_server_kit::env_names!(
    /// The registry's environment variables: `MSAKIT_REGISTRY_*`.
    pub RegistryEnv,
    "MSAKIT_REGISTRY"
);

/// Command-line flags; each can also be set with its `MSAKIT_REGISTRY_*` environment variable.
/// A flag beats its variable, which beats the config file.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "msakit-registry",
    version,
    about = "The msakit service registry",
    mut_arg("listen", |a| a.help("Address to listen on [default: 0.0.0.0:8761]")),
    mut_arg("data_dir", |a| a.help("Directory where registrations survive restarts")),
    mut_arg("node_id", |a| a.help("Run as this node of a cluster (needs `--peers` and `--data-dir`)"))
)]
pub struct Cli {
    /// What every server takes: config file, address, data directory, limits, TLS, logs.
    #[command(flatten)]
    pub serve: msakit_server_kit::ServeFlags<RegistryEnv>,
    /// Comma-separated access tokens (write access; read access too with protect_reads).
    #[arg(
        long,
        env = "MSAKIT_REGISTRY_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub tokens: Option<Vec<String>>,
    /// Lease TTL for instances that ask for none, e.g. `15s`.
    #[arg(long, env = "MSAKIT_REGISTRY_DEFAULT_TTL", value_parser = humantime::parse_duration)]
    pub default_ttl: Option<Duration>,
    /// The cluster's node id, peers and token.
    #[command(flatten)]
    pub cluster: msakit_raft::ClusterFlags<RegistryEnv>,
}

impl Cli {
    /// The configuration: the file (if any), then the flags and variables over it; validated.
    pub fn resolve(&self) -> Result<RegistryConfig, RegistryConfigError> {
        let mut config = match &self.serve.config {
            Some(path) => RegistryConfig::from_file(path)?,
            None => RegistryConfig::default(),
        };
        self.serve
            .overlay(&mut config.listen, &mut config.connections, &mut config.tls)
            .map_err(|reason| RegistryConfigError::Invalid {
                field: "tls",
                reason: reason.into(),
            })?;
        if let Some(dir) = &self.serve.data_dir {
            config.data_dir = Some(dir.clone());
        }
        if let Some(tokens) = &self.tokens {
            config.auth.tokens = tokens.iter().filter(|t| !t.is_empty()).cloned().collect();
        }
        if let Some(ttl) = self.default_ttl {
            config.lease.default_ttl = ttl;
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
            ("cluster_token", "MSAKIT_REGISTRY_CLUSTER_TOKEN"),
            ("config", "MSAKIT_REGISTRY_CONFIG"),
            ("data_dir", "MSAKIT_REGISTRY_DATA_DIR"),
            ("default_ttl", "MSAKIT_REGISTRY_DEFAULT_TTL"),
            ("listen", "MSAKIT_REGISTRY_LISTEN"),
            ("log_format", "MSAKIT_REGISTRY_LOG_FORMAT"),
            ("max_connections", "MSAKIT_REGISTRY_MAX_CONNECTIONS"),
            ("node_id", "MSAKIT_REGISTRY_NODE_ID"),
            ("peers", "MSAKIT_REGISTRY_PEERS"),
            ("tls_cert", "MSAKIT_REGISTRY_TLS_CERT"),
            ("tls_client_ca", "MSAKIT_REGISTRY_TLS_CLIENT_CA"),
            ("tls_key", "MSAKIT_REGISTRY_TLS_KEY"),
            ("tokens", "MSAKIT_REGISTRY_TOKENS"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, e)| (a.to_string(), e.to_string()))
            .collect();
        assert_eq!(seen, expected);
    }
    use clap::Parser;

    #[test]
    fn defaults_are_valid() {
        RegistryConfig::default().validate().unwrap();
    }

    #[test]
    fn flags_beat_the_file() {
        let dir =
            std::env::temp_dir().join(format!("msakit-registry-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("registry.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:9000\nlease: { default_ttl: 20s }\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "msakit-registry",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9100",
        ])
        .unwrap();
        let config = cli.resolve().unwrap();
        assert_eq!(config.listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(config.lease.default_ttl, Duration::from_secs(20));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        let config: RegistryConfig =
            serde_yaml_ng::from_str("self_preservation: { expiring_share: 2 }").unwrap();
        match config.validate() {
            Err(RegistryConfigError::Invalid { field, .. }) => {
                assert_eq!(field, "self_preservation.expiring_share")
            }
            other => panic!("{other:?}"),
        }
        assert!(serde_yaml_ng::from_str::<RegistryConfig>("lease: { ttl: 1s }").is_err());
    }
}
