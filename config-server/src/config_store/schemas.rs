//! An application's JSON Schema, which every later write of its documents must satisfy.

use serde_json::Value;

use super::{ConfigStore, ConfigStoreError, audit_entry};
use crate::document;
use crate::format::{Command, FormatVersion};

impl ConfigStore {
    /// Sets an application's JSON Schema; later writes of its documents must satisfy it.
    pub(crate) async fn set_schema(
        &self,
        application: &str,
        schema: Value,
        author: &str,
    ) -> Result<(), ConfigStoreError> {
        document::check_name("application", application)?;
        if !schema.is_object() {
            // `true` and `false` are JSON Schemas too, but no config is meant to be checked by
            // them: most likely a mistake.
            return Err(ConfigStoreError::InvalidSchema(
                "the schema must be a JSON object".into(),
            ));
        }
        jsonschema::validator_for(&schema).map_err(|e| {
            ConfigStoreError::InvalidSchema(format!("not a valid JSON Schema: {e}"))
        })?;
        let _serial = self.serial.lock().await;
        let audit = audit_entry(author, "schema", application.to_owned(), String::new());
        self.writes
            .commit(Command::Schema {
                format_version: FormatVersion::CURRENT,
                application: application.to_owned(),
                schema: schema.to_string(),
                audit,
            })
            .await?;
        Ok(())
    }
}
