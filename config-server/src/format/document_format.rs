//! A document's text format (the API's [`Format`]) as records write it: `yaml`, `json` or
//! `properties`, whatever the API's type comes to look like.

use msakit_api::config::Format;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FormatRecord {
    Yaml,
    Json,
    Properties,
}

/// Writes `format` as its record.
pub(crate) fn serialize<S: Serializer>(format: &Format, serializer: S) -> Result<S::Ok, S::Error> {
    match format {
        Format::Yaml => FormatRecord::Yaml,
        Format::Json => FormatRecord::Json,
        Format::Properties => FormatRecord::Properties,
    }
    .serialize(serializer)
}

/// Reads a format from its record.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Format, D::Error> {
    Ok(match FormatRecord::deserialize(deserializer)? {
        FormatRecord::Yaml => Format::Yaml,
        FormatRecord::Json => Format::Json,
        FormatRecord::Properties => Format::Properties,
    })
}
