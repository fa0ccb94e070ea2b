//! Documents: their address (application / profile / label), their formats, parsing with
//! line-and-column errors, and flattening into Spring's `a.b.c` / `a[0]` keys.

use std::collections::BTreeMap;

use msakit_api::config::Format;
use serde_json::{Map, Value};

/// The application every application inherits from.
pub(crate) const SHARED: &str = "application";
/// The profile of a document that applies to every profile.
pub(crate) const DEFAULT_PROFILE: &str = "default";
/// The label used when none is given; `master` is its alias.
pub(crate) const DEFAULT_LABEL: &str = "main";

/// Where a document lives.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub(crate) struct DocKey {
    pub(crate) application: String,
    pub(crate) profile: String,
    pub(crate) label: String,
}

impl std::fmt::Display for DocKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.application, self.profile, self.label)
    }
}

/// Why a name, a format or a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DocumentError {
    /// A name is not allowed.
    #[error("{0}")]
    InvalidName(String),
    /// The document does not parse.
    #[error("{format} does not parse at line {line}, column {column}: {message}")]
    Syntax {
        /// The format tried.
        format: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The top level is not a map of keys.
    #[error("the document's top level must be a map of keys")]
    NotAMap,
}

/// [`check_name`] as an ECMA-262 pattern, for the OpenAPI document.
pub(crate) const NAME_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$";
/// [`check_label`] of a URL's label (`(_)` or `/` between names), as a pattern.
pub(crate) const LABEL_PATTERN: &str =
    "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}((\\(_\\)|/)[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}){0,7}$";
/// A file path (names separated by `/`, at most 8), as a pattern.
pub(crate) const PATH_PATTERN: &str =
    "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}){0,7}$";
/// Comma-separated profiles, as a pattern.
pub(crate) const PROFILES_PATTERN: &str =
    "^ *[A-Za-z0-9_-][A-Za-z0-9._-]{0,127} *(, *[A-Za-z0-9_-][A-Za-z0-9._-]{0,127} *)*$";

/// Checks one name: 1–128 characters of `[A-Za-z0-9._-]`, not starting with `.`, so no path or
/// traversal can be spelled.
pub(crate) fn check_name(kind: &str, value: &str) -> Result<(), DocumentError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DocumentError::InvalidName(format!(
            "{kind} must be 1-128 characters of letters, digits, '.', '_', '-' and not start with '.', got {value:?}"
        )))
    }
}

/// A label as written in a URL: `(_)` stands for `/` (git branches like `feature(_)x`), and
/// `master` is `main`.
pub(crate) fn normalize_label(label: &str) -> String {
    let label = label.replace("(_)", "/");
    if label == "master" {
        DEFAULT_LABEL.to_owned()
    } else {
        label
    }
}

/// Checks a label: names separated by `/`, at most 8 deep.
pub(crate) fn check_label(label: &str) -> Result<(), DocumentError> {
    let segments: Vec<&str> = label.split('/').collect();
    if segments.len() > 8 {
        return Err(DocumentError::InvalidName(
            "a label has at most 8 '/'-separated parts".into(),
        ));
    }
    segments
        .into_iter()
        .try_for_each(|segment| check_name("label", segment))
}

impl DocKey {
    /// A validated key.
    pub(crate) fn new(
        application: &str,
        profile: &str,
        label: &str,
    ) -> Result<Self, DocumentError> {
        let label = normalize_label(label);
        check_name("application", application)?;
        check_name("profile", profile)?;
        check_label(&label)?;
        Ok(Self {
            application: application.to_owned(),
            profile: profile.to_owned(),
            label,
        })
    }

    /// The storage key; NUL cannot occur in names.
    pub(crate) fn storage_key(&self) -> String {
        format!("{}\0{}\0{}", self.application, self.profile, self.label)
    }
}

/// The format named by a `Content-Type`.
pub(crate) fn format_of(content_type: &str) -> Option<Format> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Some(Format::Yaml)
        }
        "application/json" => Some(Format::Json),
        "text/x-java-properties" | "text/x-properties" | "text/plain" => Some(Format::Properties),
        _ => None,
    }
}

/// Parses a document into a tree (properties become a tree by their dotted keys); an empty or
/// `null` document is an empty map (as versions written before writes refused `null` load).
pub(crate) fn parse(format: Format, text: &str) -> Result<Value, DocumentError> {
    parse_tree(format, text).map(|tree| match tree {
        Value::Null => Value::Object(Map::new()),
        tree => tree,
    })
}

/// A document being written, as [`parse`]; but a written `null` (or `~`) is not a map, while a
/// document of nothing but comments is still an empty one.
pub(crate) fn parse_written(format: Format, text: &str) -> Result<Value, DocumentError> {
    match parse_tree(format, text)? {
        Value::Null if has_content(text) => Err(DocumentError::NotAMap),
        Value::Null => Ok(Value::Object(Map::new())),
        tree => Ok(tree),
    }
}

/// The tree of a document: a map, or `Null` for an empty one.
fn parse_tree(format: Format, text: &str) -> Result<Value, DocumentError> {
    let value = match format {
        Format::Json => serde_json::from_str::<Value>(text).map_err(|e| DocumentError::Syntax {
            format: "JSON",
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?,
        Format::Yaml => {
            if text.trim().is_empty() {
                Value::Object(Map::new())
            } else {
                serde_yaml_ng::from_str::<Value>(text).map_err(|e| {
                    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                    DocumentError::Syntax {
                        format: "YAML",
                        line,
                        column,
                        message: e.to_string(),
                    }
                })?
            }
        }
        Format::Properties => {
            let map =
                java_properties::read(text.as_bytes()).map_err(|e| DocumentError::Syntax {
                    format: "properties",
                    line: e.line_number().unwrap_or(0),
                    column: 1,
                    message: e.to_string(),
                })?;
            let mut root = Map::new();
            for (key, value) in map {
                root.insert(key, Value::String(value));
            }
            Value::Object(root)
        }
    };
    match value {
        Value::Object(_) | Value::Null => Ok(value),
        _ => Err(DocumentError::NotAMap),
    }
}

/// Whether `text` holds more than blank lines, comments, YAML directives (`%YAML 1.2`) and
/// document markers (`---`, `...`, each perhaps followed by a comment).
fn has_content(text: &str) -> bool {
    text.lines().any(|line| {
        // A comment starts at a `#` at the line's start or after a space.
        let code = match line.find(" #") {
            Some(at) => &line[..at],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        }
        .trim();
        !code.is_empty() && !code.starts_with('%') && code != "---" && code != "..."
    })
}

/// Flattens a tree into Spring's keys: `a.b.c`, lists as `a[0]`.
pub(crate) fn flatten(value: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, child, out);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for (i, child) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), child, out);
                }
            }
            Value::Object(_) | Value::Array(_) => {
                out.insert(prefix.to_owned(), Value::String(String::new()));
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    walk("", value, &mut out);
    out
}

pub(crate) use msakit_api::config::unflatten;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_patterns_are_the_checks() {
        let (a, long) = ("a".repeat(128), "a".repeat(129));
        let extra: Vec<String> = vec![
            a.clone(),
            long.clone(),
            format!("{a}(_){a}"),
            format!("{a}(_){long}"),
            ["x"; 8].join("(_)"),
            ["x"; 9].join("(_)"),
            ["x"; 8].join("/"),
            ["x"; 9].join("/"),
            "a(_)(_)b".into(),
            "a(_).b".into(),
            "master".into(),
        ];
        let name = regex::Regex::new(NAME_PATTERN).unwrap();
        let found = msakit_api::openapi::disagreements(
            "aZ0._-:/ ",
            3,
            &extra,
            |s| name.is_match(s),
            |s| check_name("application", s).is_ok(),
        );
        assert!(found.is_empty(), "names: {found:?}");
        let label = regex::Regex::new(LABEL_PATTERN).unwrap();
        let found = msakit_api::openapi::disagreements(
            "a._(/)",
            4,
            &extra,
            |s| label.is_match(s),
            |s| check_label(&normalize_label(s)).is_ok(),
        );
        assert!(found.is_empty(), "labels: {found:?}");
        let path = regex::Regex::new(PATH_PATTERN).unwrap();
        let found = msakit_api::openapi::disagreements(
            "a./_",
            4,
            &extra,
            |s| path.is_match(s),
            |s| crate::config_store::check_file_path(s).is_ok(),
        );
        assert!(found.is_empty(), "paths: {found:?}");
    }
    use serde_json::json;

    #[test]
    fn flattening_uses_springs_keys() {
        let tree = parse(Format::Yaml, "a:\n  b: 1\n  c: [x, y]\nd: true\n").unwrap();
        let flat = flatten(&tree);
        assert_eq!(flat["a.b"], json!(1));
        assert_eq!(flat["a.c[1]"], json!("y"));
        assert_eq!(flat["d"], json!(true));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        match parse(Format::Yaml, "a: 1\nb: [unclosed\n") {
            Err(DocumentError::Syntax { line, .. }) => assert!(line >= 2),
            other => panic!("{other:?}"),
        }
        match parse(Format::Json, "{\n  \"a\": ,\n}") {
            Err(DocumentError::Syntax { line, column, .. }) => assert_eq!((line, column), (2, 8)),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(Format::Json, "[1]"), Err(DocumentError::NotAMap));
        let empty = Ok(Value::Object(Map::new()));
        assert_eq!(
            parse_written(Format::Yaml, "null\n"),
            Err(DocumentError::NotAMap)
        );
        assert_eq!(
            parse_written(Format::Yaml, "~"),
            Err(DocumentError::NotAMap)
        );
        assert_eq!(
            parse_written(Format::Json, "null"),
            Err(DocumentError::NotAMap)
        );
        for nothing in [
            "",
            "# only a comment\n---\n",
            "--- # a marker and a comment\n",
            "%YAML 1.2\n---\n...\n",
        ] {
            assert_eq!(parse_written(Format::Yaml, nothing), empty, "{nothing:?}");
        }
        // Stored versions written before `null` was refused still load, as empty maps.
        assert_eq!(parse(Format::Yaml, "null\n"), empty);
        let props = parse(Format::Properties, "a.b=1\nc = two\n").unwrap();
        assert_eq!(flatten(&props)["a.b"], json!("1"));
    }

    #[test]
    fn unflatten_inverts_flatten() {
        let tree = json!({"a": {"b": 1, "c": ["x", {"d": true}]}, "e": "f"});
        assert_eq!(unflatten(&flatten(&tree)), tree);
    }

    #[test]
    fn names_cannot_spell_paths() {
        for bad in ["", "..", "../x", "a/b", ".env", "a b"] {
            assert!(check_name("application", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            DocKey::new("orders", "dev", "master").unwrap().label,
            "main"
        );
        assert_eq!(
            DocKey::new("orders", "dev", "feature(_)x").unwrap().label,
            "feature/x"
        );
        assert!(DocKey::new("orders", "dev", "a(_)..").is_err());
    }
}
