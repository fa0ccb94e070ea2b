//! The flags every server takes, each also read from an environment variable named after the
//! server (`MSAKIT_REGISTRY_LISTEN`, `MSAKIT_CONFIG_LISTEN`, …), and laid over the config file's
//! settings: file < environment < flag.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{ConnectionLimits, LogFormat, TlsConfig};

/// The environment variables a server's flags are read from.
pub trait EnvNames: Clone + Default + std::fmt::Debug + Send + Sync + 'static {
    /// `--config`.
    const CONFIG: &'static str;
    /// `--listen`.
    const LISTEN: &'static str;
    /// `--data-dir`.
    const DATA_DIR: &'static str;
    /// `--max-connections`.
    const MAX_CONNECTIONS: &'static str;
    /// `--tls-cert`.
    const TLS_CERT: &'static str;
    /// `--tls-key`.
    const TLS_KEY: &'static str;
    /// `--tls-client-ca`.
    const TLS_CLIENT_CA: &'static str;
    /// `--log-format`.
    const LOG_FORMAT: &'static str;
    /// `--node-id`.
    const NODE_ID: &'static str;
    /// `--peers`.
    const PEERS: &'static str;
    /// `--cluster-token`.
    const CLUSTER_TOKEN: &'static str;
}

/// `env_names!(pub RegistryEnv, "MSAKIT_REGISTRY")`: a type whose [`EnvNames`] are the prefix
/// followed by `_CONFIG`, `_LISTEN`, `_DATA_DIR`, and so on.
#[macro_export]
macro_rules! env_names {
    ($(#[$meta:meta])* $vis:vis $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name;

        impl $crate::EnvNames for $name {
            const CONFIG: &'static str = concat!($prefix, "_CONFIG");
            const LISTEN: &'static str = concat!($prefix, "_LISTEN");
            const DATA_DIR: &'static str = concat!($prefix, "_DATA_DIR");
            const MAX_CONNECTIONS: &'static str = concat!($prefix, "_MAX_CONNECTIONS");
            const TLS_CERT: &'static str = concat!($prefix, "_TLS_CERT");
            const TLS_KEY: &'static str = concat!($prefix, "_TLS_KEY");
            const TLS_CLIENT_CA: &'static str = concat!($prefix, "_TLS_CLIENT_CA");
            const LOG_FORMAT: &'static str = concat!($prefix, "_LOG_FORMAT");
            const NODE_ID: &'static str = concat!($prefix, "_NODE_ID");
            const PEERS: &'static str = concat!($prefix, "_PEERS");
            const CLUSTER_TOKEN: &'static str = concat!($prefix, "_CLUSTER_TOKEN");
        }
    };
}

/// Every flag of `command` that reads an environment variable, with the variable, sorted by flag:
/// what a server's test compares with the variables it documents.
pub fn flag_variables(command: &clap::Command) -> Vec<(String, String)> {
    let mut flags: Vec<(String, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let variable = arg.get_env()?.to_str()?.to_owned();
            Some((arg.get_id().to_string(), variable))
        })
        .collect();
    flags.sort();
    flags
}

/// The flags of serving: the config file, the address, the data directory, the connection
/// limit, TLS and the log format. A server flattens them into its own `Cli`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeFlags<E: EnvNames> {
    /// YAML config file.
    #[arg(long, env = E::CONFIG)]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = E::LISTEN)]
    pub listen: Option<SocketAddr>,
    /// Where the server keeps its data.
    #[arg(long, env = E::DATA_DIR)]
    pub data_dir: Option<PathBuf>,
    /// Open connections at most; one more is answered 503 and closed.
    #[arg(long, env = E::MAX_CONNECTIONS)]
    pub max_connections: Option<usize>,
    /// Serve HTTPS with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long, env = E::TLS_CERT)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = E::TLS_KEY)]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, env = E::TLS_CLIENT_CA)]
    pub tls_client_ca: Option<PathBuf>,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = E::LOG_FORMAT, default_value = "pretty")]
    pub log_format: LogFormat,
    #[arg(skip)]
    names: PhantomData<E>,
}

impl<E: EnvNames> ServeFlags<E> {
    /// Lays the address, connection limit and TLS flags over the file's settings; the reason
    /// when the TLS settings that result are incomplete.
    pub fn overlay(
        &self,
        listen: &mut SocketAddr,
        connections: &mut ConnectionLimits,
        tls: &mut Option<TlsConfig>,
    ) -> Result<(), &'static str> {
        if let Some(address) = self.listen {
            *listen = address;
        }
        if let Some(max) = self.max_connections {
            connections.max_connections = max;
        }
        *tls = TlsConfig::overlay(
            tls.take(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    env_names!(TestEnv, "MSAKIT_TEST");

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeFlags<TestEnv>,
    }

    #[test]
    fn each_flag_has_its_server_s_variable_and_lays_over_the_file() {
        let command = Cli::command();
        let env = |name: &str| {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == name)
                .unwrap();
            arg.get_env().unwrap().to_str().unwrap().to_owned()
        };
        assert_eq!(env("listen"), "MSAKIT_TEST_LISTEN");
        assert_eq!(env("tls_client_ca"), "MSAKIT_TEST_TLS_CLIENT_CA");
        let cli = Cli::parse_from(["x", "--listen", "127.0.0.1:9", "--max-connections", "7"]);
        let mut listen: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let mut limits = ConnectionLimits::default();
        let mut tls = None;
        cli.serve
            .overlay(&mut listen, &mut limits, &mut tls)
            .unwrap();
        assert_eq!(listen.to_string(), "127.0.0.1:9");
        assert_eq!(limits.max_connections, 7);
        assert!(tls.is_none());
        let half = Cli::parse_from(["x", "--tls-cert", "c.pem"]);
        assert!(
            half.serve
                .overlay(&mut listen, &mut limits, &mut tls)
                .is_err()
        );
    }
}
