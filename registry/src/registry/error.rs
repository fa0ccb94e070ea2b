//! Why a registry operation was refused.

use serde::{Deserialize, Serialize};

use crate::validate;

/// Why a registry operation was refused. Serialisable: in a cluster, the leader's refusal
/// travels back as the answer to a Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum RegistryError {
    /// No such instance (or no lease for it): the client should register again.
    #[error("instance {id} of service {service} is not registered")]
    UnknownInstance {
        /// The service.
        service: String,
        /// The instance id.
        id: String,
    },
    /// A name, id or field is invalid.
    #[error("{message}")]
    Invalid {
        /// Machine-readable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The registry holds as many instances as it is allowed to.
    #[error("the registry is full ({0} instances)")]
    Full(usize),
}

impl<'de> Deserialize<'de> for RegistryError {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        enum Wire {
            UnknownInstance { service: String, id: String },
            Invalid { code: String, message: String },
            Full(usize),
        }
        Ok(match Wire::deserialize(deserializer)? {
            Wire::UnknownInstance { service, id } => RegistryError::UnknownInstance { service, id },
            Wire::Invalid { code, message } => RegistryError::Invalid {
                code: validate::known_code(&code),
                message,
            },
            Wire::Full(n) => RegistryError::Full(n),
        })
    }
}

pub(super) fn unknown(service: &str, id: &str) -> RegistryError {
    RegistryError::UnknownInstance {
        service: service.to_owned(),
        id: id.to_owned(),
    }
}
