//! TLS for the servers, with rustls: a certificate chain and key from PEM files, and optionally
//! client-certificate authentication against a CA of the operator's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Where a server's TLS material is.
///
/// ```yaml
/// tls: { cert: /etc/msakit/server.pem, key: /etc/msakit/server.key, client_ca: /etc/msakit/clients-ca.pem }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, every client must present a certificate signed by one of these CAs (PEM).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS material cannot be used. Names the file; never shows key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing, unreadable or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the combination (key does not match the certificate, say).
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify clients.
    #[error("client CA: {0}")]
    ClientCa(String),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certificates.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certificates)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// The TLS settings once command-line flags (or their variables) are laid over the file's:
    /// a flag replaces the file's value; a certificate without a key (or the reverse) is refused.
    pub fn overlay(
        file: Option<TlsConfig>,
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<TlsConfig>, &'static str> {
        let (file_cert, file_key, file_ca) = match file {
            Some(tls) => (Some(tls.cert), Some(tls.key), tls.client_ca),
            None => (None, None, None),
        };
        let cert = cert.map(Path::to_owned).or(file_cert);
        let key = key.map(Path::to_owned).or(file_key);
        let client_ca = client_ca.map(Path::to_owned).or(file_ca);
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(TlsConfig {
                cert,
                key,
                client_ca,
            })),
            (None, None) if client_ca.is_none() => Ok(None),
            (None, None) => Err("a client CA needs a server certificate and key"),
            _ => Err("a certificate and a key go together: give both"),
        }
    }

    /// Reads the files and builds the acceptor; HTTP/2 and HTTP/1.1 are offered over ALPN.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let chain = certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_error(&self.key, e))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in certificates(path)? {
                    roots.add(certificate).map_err(|e| file_error(path, e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_lay_over_the_file() {
        let file = TlsConfig {
            cert: "file.pem".into(),
            key: "file.key".into(),
            client_ca: None,
        };
        let merged = TlsConfig::overlay(Some(file), Some(Path::new("flag.pem")), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(merged.cert, Path::new("flag.pem"));
        assert_eq!(merged.key, Path::new("file.key"));
        assert_eq!(TlsConfig::overlay(None, None, None, None), Ok(None));
        assert!(TlsConfig::overlay(None, Some(Path::new("c.pem")), None, None).is_err());
        assert!(TlsConfig::overlay(None, None, None, Some(Path::new("ca.pem"))).is_err());
    }

    #[test]
    fn missing_files_are_named() {
        let config = TlsConfig {
            cert: PathBuf::from("/nonexistent/server.pem"),
            key: PathBuf::from("/nonexistent/server.key"),
            client_ca: None,
        };
        let Err(error) = config.acceptor() else {
            panic!("accepted")
        };
        let error = error.to_string();
        assert!(error.contains("/nonexistent/server.pem"), "{error}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("empty.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let config = TlsConfig {
            cert: cert.clone(),
            key: cert,
            client_ca: None,
        };
        let Err(error) = config.acceptor() else {
            panic!("accepted")
        };
        let error = error.to_string();
        assert!(error.contains("no certificate"), "{error}");
    }

    #[test]
    fn generated_material_builds_an_acceptor() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("c.pem"), certificate.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        let mut config = TlsConfig {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem"),
            client_ca: Some(dir.path().join("c.pem")),
        };
        config.acceptor().unwrap();
        // A key that does not belong to the certificate is refused.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("other.pem"), other.serialize_pem()).unwrap();
        config.key = dir.path().join("other.pem");
        assert!(config.acceptor().is_err());
    }
}
