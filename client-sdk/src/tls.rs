//! HTTPS towards a private PKI: which CAs to trust besides the public roots, and which client
//! certificate to present when the registry, the config server or a service asks for one.

use std::path::Path;

/// TLS settings shared by every client the SDK builds. The default trusts the public web roots
/// and presents no certificate.
#[derive(Clone, Default)]
pub struct TlsOptions {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never shows key material.
        f.debug_struct("TlsOptions")
            .field("extra_roots", &self.roots.len())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

/// Why TLS material cannot be used. Names the file, never its contents.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TlsError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| error(path, e))
}

fn error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl TlsOptions {
    /// Also trusts the CA certificates in this PEM file.
    pub fn trust_ca_file(mut self, path: &Path) -> Result<Self, TlsError> {
        let certificates =
            reqwest::Certificate::from_pem_bundle(&read(path)?).map_err(|e| error(path, e))?;
        if certificates.is_empty() {
            return Err(error(path, "no certificate in the file"));
        }
        self.roots.extend(certificates);
        Ok(self)
    }

    /// Presents this client certificate chain (PEM) with its private key (PEM).
    pub fn client_certificate(mut self, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        self.identity = Some(reqwest::Identity::from_pem(&pem).map_err(|e| error(cert, e))?);
        Ok(self)
    }

    /// A client builder carrying these settings.
    pub(crate) fn builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder();
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }
}
