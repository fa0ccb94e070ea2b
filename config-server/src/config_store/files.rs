//! Plain-text files kept beside a document (an `nginx.conf`, say).

use super::{Applied, ConfigStore, ConfigStoreError, audit_entry, check_file_path};
use crate::document::{DEFAULT_PROFILE, DocKey, SHARED};
use crate::format::{Command, FormatVersion};
use crate::storage::blocking;

impl ConfigStore {
    /// Stores a plain-text file (an nginx.conf, say) for (application, profile, label).
    pub(crate) async fn put_file(
        &self,
        key: &DocKey,
        path: &str,
        content: String,
        author: &str,
    ) -> Result<(), ConfigStoreError> {
        check_file_path(path)?;
        if content.len() > self.max_bytes {
            return Err(ConfigStoreError::TooLarge(content.len(), self.max_bytes));
        }
        let audit = audit_entry(author, "file", format!("{key}:{path}"), String::new());
        self.writes
            .commit(Command::File {
                format_version: FormatVersion::CURRENT,
                doc: key.storage_key(),
                path: path.to_owned(),
                content: Some(content),
                audit,
            })
            .await?;
        Ok(())
    }

    /// Removes a plain-text file.
    pub(crate) async fn delete_file(
        &self,
        key: &DocKey,
        path: &str,
        author: &str,
    ) -> Result<(), ConfigStoreError> {
        check_file_path(path)?;
        let audit = audit_entry(
            author,
            "file_delete",
            format!("{key}:{path}"),
            String::new(),
        );
        let removed = self
            .writes
            .commit(Command::File {
                format_version: FormatVersion::CURRENT,
                doc: key.storage_key(),
                path: path.to_owned(),
                content: None,
                audit,
            })
            .await?;
        if matches!(removed, Applied::File(true)) {
            Ok(())
        } else {
            Err(ConfigStoreError::NotFound(format!("no file {path:?}")))
        }
    }

    /// A plain-text file for (application, profile, label), falling back to the default profile
    /// and then to the shared `application`, as Spring looks resources up.
    pub(crate) async fn file(
        &self,
        key: &DocKey,
        path: &str,
    ) -> Result<Option<String>, ConfigStoreError> {
        check_file_path(path)?;
        let candidates = [
            key.clone(),
            DocKey {
                profile: DEFAULT_PROFILE.to_owned(),
                ..key.clone()
            },
            DocKey {
                application: SHARED.to_owned(),
                profile: DEFAULT_PROFILE.to_owned(),
                ..key.clone()
            },
        ];
        for candidate in candidates {
            let (store, doc, path) = (self.store.clone(), candidate.storage_key(), path.to_owned());
            if let Some(text) = blocking(move || store.file(&doc, &path)).await? {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }
}
