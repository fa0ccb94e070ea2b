//! The config server's native API (`/v1/...`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The request header that carries a write's message for the history.
pub const MESSAGE_HEADER: &str = "x-msakit-message";

/// The response header carrying the change index a response reflects; pass it back as
/// `?index=` to block until the resolved configuration changes after it.
pub const INDEX_HEADER: &str = "x-msakit-index";

/// A document's text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// YAML (`application/yaml`, `text/yaml`).
    Yaml,
    /// JSON (`application/json`).
    Json,
    /// Java properties (`text/x-java-properties`).
    Properties,
}

/// One version of one document, as `GET /v1/config/{application}/{profile}/{label}` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentVersion {
    /// The application (`application` is shared by all).
    pub application: String,
    /// The profile.
    pub profile: String,
    /// The label.
    pub label: String,
    /// This version's number, from 1; also the `ETag`.
    pub version: u64,
    /// The text's format.
    pub format: Format,
    /// The document, as written (secrets stay `{cipher}…`).
    pub content: String,
    /// Who wrote it.
    pub author: String,
    /// Why.
    pub message: String,
    /// When (Unix milliseconds).
    pub created_at_ms: u64,
    /// The change index of this write.
    pub index: u64,
}

/// A write's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriteResult {
    /// The new version.
    pub version: u64,
    /// The change index of the write.
    pub index: u64,
}

/// One entry of a document's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    /// The version.
    pub version: u64,
    /// Who wrote it.
    pub author: String,
    /// Why.
    pub message: String,
    /// When (Unix milliseconds).
    pub created_at_ms: u64,
    /// Whether this version deleted the document (a tombstone).
    pub deleted: bool,
    /// The version this one restored, if it was a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u64>,
}

/// Response of `GET …/history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct History {
    /// Every version, newest first.
    pub versions: Vec<HistoryEntry>,
}

/// Body of `POST …/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The version to restore; the restore is a new version.
    pub version: u64,
}

/// A document that contributed to a resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Source {
    /// The application.
    pub application: String,
    /// The profile.
    pub profile: String,
    /// The version used.
    pub version: u64,
}

/// Response of `GET /v1/resolve/{application}/{profiles}/{label}` and the data of a watch event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resolved {
    /// The application.
    pub application: String,
    /// The profiles, in request order (the last wins).
    pub profiles: Vec<String>,
    /// The label.
    pub label: String,
    /// The change index this view reflects.
    pub index: u64,
    /// The merged configuration with flattened keys (`a.b.c`, lists as `a[0]`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// The documents merged, highest precedence first.
    pub sources: Vec<Source>,
}

/// Rebuilds a tree from flattened keys (`a.b.c`, `a[0]`), for rendering as YAML or JSON.
pub fn unflatten(flat: &BTreeMap<String, Value>) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in flat {
        let mut node = &mut root;
        let parts = key_parts(key);
        for (i, part) in parts.iter().enumerate() {
            let last = i == parts.len() - 1;
            node = match part {
                KeyPart::Name(name) => {
                    if !node.is_object() {
                        *node = Value::Object(Map::new());
                    }
                    let map = node.as_object_mut().expect("just made an object");
                    map.entry(name.clone()).or_insert(Value::Null)
                }
                KeyPart::Index(index) => {
                    if !node.is_array() {
                        *node = Value::Array(Vec::new());
                    }
                    let items = node.as_array_mut().expect("just made an array");
                    if items.len() <= *index {
                        items.resize(index + 1, Value::Null);
                    }
                    &mut items[*index]
                }
            };
            if last {
                *node = value.clone();
            }
        }
    }
    root
}

enum KeyPart {
    Name(String),
    Index(usize),
}

/// `a.b[2].c` → a, b, 2, c. Indexes too large to be real list positions stay part of the name.
fn key_parts(key: &str) -> Vec<KeyPart> {
    let mut parts = Vec::new();
    for segment in key.split('.') {
        let (name, mut rest) = match segment.find('[') {
            Some(at) => segment.split_at(at),
            None => (segment, ""),
        };
        let mut name = name.to_owned();
        let mut indexes = Vec::new();
        while let Some(close) = rest.find(']') {
            // `rest` must open with `[` for an index; `]` first (as in `a]`) is part of the name.
            let index = rest
                .strip_prefix('[')
                .and_then(|r| r.get(..close - 1))
                .and_then(|digits| digits.parse::<usize>().ok());
            match index {
                Some(i) if i < 10_000 => indexes.push(i),
                _ => {
                    // Not a well-formed index list: the whole segment is a name.
                    name = segment.to_owned();
                    indexes.clear();
                    rest = "";
                    break;
                }
            }
            rest = &rest[close + 1..];
        }
        name.push_str(rest);
        if !name.is_empty() {
            parts.push(KeyPart::Name(name));
        }
        parts.extend(indexes.into_iter().map(KeyPart::Index));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unflatten_rebuilds_maps_and_lists() {
        let flat: BTreeMap<String, Value> = [
            ("a.b".to_owned(), json!(1)),
            ("a.c[0]".to_owned(), json!("x")),
            ("a.c[1].d".to_owned(), json!(true)),
            ("e".to_owned(), json!("f")),
        ]
        .into();
        assert_eq!(
            unflatten(&flat),
            json!({"a": {"b": 1, "c": ["x", {"d": true}]}, "e": "f"})
        );
    }

    /// Found by the `config_document` fuzz target: a `]` right after an index panicked.
    #[test]
    fn stray_brackets_stay_part_of_the_name() {
        let flat: BTreeMap<String, Value> = [
            ("list;t[0]]".to_owned(), json!(1)),
            ("a]".to_owned(), json!(2)),
            ("b[]".to_owned(), json!(3)),
            ("c[x]".to_owned(), json!(4)),
        ]
        .into();
        let tree = unflatten(&flat);
        assert_eq!(tree["a]"], 2);
        assert_eq!(tree["b[]"], 3);
        assert_eq!(tree["c[x]"], 4);
        assert_eq!(tree["list;t[0]]"], 1);
    }
}
