//! `{cipher}` values: AES-256-GCM with a random 96-bit nonce per value, stored as
//! `{cipher}` + base64(nonce ‖ ciphertext ‖ tag). The key comes from a file or the environment
//! and is never logged.

use aes_gcm::aead::{Aead, Generate, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The prefix of an encrypted value.
pub(crate) const PREFIX: &str = "{cipher}";

/// The secrets key.
#[derive(Clone)]
pub(crate) struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(<key>)")
    }
}

/// A key that is not base64 of 32 bytes, or a value that does not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    /// The key is malformed.
    #[error("the secrets key must be base64 of 32 bytes")]
    BadKey,
    /// The value is not something this key encrypted.
    #[error("the value cannot be decrypted with this server's key")]
    Undecryptable,
}

impl Cipher {
    /// A cipher from a base64 key.
    pub(crate) fn from_base64(key: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| SecretError::BadKey)?;
        let aead = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretError::BadKey)?;
        Ok(Self { aead })
    }

    /// Encrypts `plaintext` into the text that follows `{cipher}`.
    pub(crate) fn encrypt(&self, plaintext: &str) -> String {
        let nonce = Nonce::generate();
        let sealed = self
            .aead
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("AES-GCM encrypts any message under 64 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    /// Decrypts the text that follows `{cipher}`.
    pub(crate) fn decrypt(&self, encoded: &str) -> Result<String, SecretError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| SecretError::Undecryptable)?;
        if bytes.len() < 12 + 16 {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce = Nonce::try_from(nonce).map_err(|_| SecretError::Undecryptable)?;
        let plain = self
            .aead
            .decrypt(&nonce, sealed)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| SecretError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn round_trips_and_refuses_tampering() {
        let cipher = Cipher::from_base64(KEY).unwrap();
        let sealed = cipher.encrypt("s3cret");
        assert_ne!(cipher.encrypt("s3cret"), sealed, "a fresh nonce each time");
        assert_eq!(cipher.decrypt(&sealed).unwrap(), "s3cret");
        let mut tampered = STANDARD.decode(&sealed).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            cipher.decrypt(&STANDARD.encode(tampered)),
            Err(SecretError::Undecryptable)
        );
        assert_eq!(
            Cipher::from_base64("c2hvcnQ=").unwrap_err(),
            SecretError::BadKey
        );
    }
}
