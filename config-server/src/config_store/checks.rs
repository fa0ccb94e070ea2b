//! What a document must pass before it is committed: size, syntax, secrets it can open, and
//! its application's schema; and what a file path may be.

use msakit_api::config::Format;

use super::{ConfigStore, ConfigStoreError};
use crate::document::{self, DocKey, DocumentError};
use crate::secrets::PREFIX;

impl ConfigStore {
    /// Size, syntax, secrets and schema.
    pub(super) fn check(
        &self,
        key: &DocKey,
        format: Format,
        content: &str,
    ) -> Result<(), ConfigStoreError> {
        if content.len() > self.max_bytes {
            return Err(ConfigStoreError::TooLarge(content.len(), self.max_bytes));
        }
        let tree = document::parse_written(format, content)?;
        let flat = document::flatten(&tree);
        for (name, value) in &flat {
            if let Some(sealed) = value.as_str().and_then(|v| v.strip_prefix(PREFIX)) {
                let cipher = self.cipher.as_ref().ok_or_else(|| {
                    ConfigStoreError::Secret(format!(
                        "{name} is a {{cipher}} value but this server has no secrets key"
                    ))
                })?;
                cipher.decrypt(sealed).map_err(|_| {
                    ConfigStoreError::Secret(format!(
                        "{name} is not a value this server encrypted; use POST /encrypt and write {{cipher}}<its output>"
                    ))
                })?;
            }
        }
        let validator = self.read().schemas.get(&key.application).cloned();
        if let Some(validator) = validator {
            if let Some(error) = validator.iter_errors(&tree).next() {
                return Err(ConfigStoreError::Schema(format!(
                    "schema violation at {}: {}",
                    if error.instance_path().as_str().is_empty() {
                        "/"
                    } else {
                        error.instance_path().as_str()
                    },
                    error
                )));
            }
        }
        Ok(())
    }
}

/// A file path: names separated by `/`, at most 8 deep; nothing that could climb or hide.
pub(crate) fn check_file_path(path: &str) -> Result<(), ConfigStoreError> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > 8 {
        return Err(DocumentError::InvalidName("a file path has at most 8 parts".into()).into());
    }
    for segment in segments {
        document::check_name("path", segment)?;
    }
    Ok(())
}
