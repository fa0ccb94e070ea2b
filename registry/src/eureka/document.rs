//! Eureka's two document formats over one tree: a `serde_json::Value` in Eureka's JSON shape
//! (attributes as `"@name"`, element text beside attributes as `"$"`, repeated elements as
//! arrays) is written as that JSON or as the equivalent XML, and XML is read back into it.

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};
use serde_json::{Map, Value};

/// Renders `value` as the XML element `name`.
pub(crate) fn to_xml(name: &str, value: &Value) -> String {
    let mut writer = Writer::new(Vec::new());
    let _ = writer.write_event(Event::Decl(quick_xml::events::BytesDecl::new(
        "1.0",
        Some("UTF-8"),
        None,
    )));
    element(&mut writer, name, value);
    String::from_utf8(writer.into_inner()).unwrap_or_default()
}

/// One element, without the XML declaration, to splice into a larger document.
pub(crate) fn fragment(name: &str, value: &Value) -> Vec<u8> {
    let mut writer = Writer::new(Vec::new());
    element(&mut writer, name, value);
    writer.into_inner()
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn element(writer: &mut Writer<Vec<u8>>, name: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Array(items) => items.iter().for_each(|item| element(writer, name, item)),
        Value::Object(map) => {
            let mut start = BytesStart::new(name);
            for (key, v) in map {
                if let (Some(attr), Some(text)) = (key.strip_prefix('@'), scalar(v)) {
                    start.push_attribute((attr, text.as_str()));
                }
            }
            let text = map.get("$").and_then(scalar);
            let children: Vec<_> = map
                .iter()
                .filter(|(k, _)| !k.starts_with('@') && *k != "$")
                .collect();
            if text.is_none() && children.is_empty() {
                let _ = writer.write_event(Event::Empty(start));
                return;
            }
            let _ = writer.write_event(Event::Start(start));
            if let Some(text) = text {
                let _ = writer.write_event(Event::Text(BytesText::new(&text)));
            }
            for (key, child) in children {
                element(writer, key, child);
            }
            let _ = writer.write_event(Event::End(BytesEnd::new(name)));
        }
        other => {
            let text = scalar(other).unwrap_or_default();
            let _ = writer.write_event(Event::Start(BytesStart::new(name)));
            let _ = writer.write_event(Event::Text(BytesText::new(&text)));
            let _ = writer.write_event(Event::End(BytesEnd::new(name)));
        }
    }
}

/// An element being read: its attributes and children so far, and its text.
#[derive(Default)]
struct Open {
    name: String,
    fields: Map<String, Value>,
    text: String,
}

impl Open {
    fn finish(self) -> Value {
        let text = self.text.trim().to_owned();
        let has_children = self.fields.keys().any(|k| !k.starts_with('@'));
        if self.fields.is_empty() {
            return Value::String(text);
        }
        let mut fields = self.fields;
        if !text.is_empty() && !has_children {
            fields.insert("$".into(), Value::String(text));
        }
        Value::Object(fields)
    }

    fn add(&mut self, name: String, value: Value) {
        match self.fields.get_mut(&name) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                self.fields.insert(name, value);
            }
        }
    }
}

/// Parses an XML document into its root element's name and tree.
pub(crate) fn from_xml(text: &str) -> Result<(String, Value), String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let open = |start: &BytesStart<'_>| -> Result<Open, String> {
        let mut node = Open {
            name: start.local_name().as_ref().to_owned(),
            ..Open::default()
        };
        for attr in start.attributes() {
            let attr = attr.map_err(|e| e.to_string())?;
            let key = format!("@{}", attr.key.local_name().as_ref());
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?;
            node.fields.insert(key, Value::String(value.into_owned()));
        }
        Ok(node)
    };
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?
        {
            Event::Start(start) => {
                if stack.len() > 32 {
                    return Err("the document is nested too deeply".into());
                }
                stack.push(open(&start)?);
            }
            Event::Empty(start) => {
                let node = open(&start)?;
                let name = node.name.clone();
                match stack.last_mut() {
                    Some(parent) => parent.add(name, node.finish()),
                    None => return Ok((name, node.finish())),
                }
            }
            Event::Text(text) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&data);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => match &*reference {
                        "amp" => "&".into(),
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "quot" => "\"".into(),
                        "apos" => "'".into(),
                        other => return Err(format!("unknown entity &{other};")),
                    },
                };
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&resolved);
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                let name = node.name.clone();
                match stack.last_mut() {
                    Some(parent) => parent.add(name, node.finish()),
                    None => return Ok((name, node.finish())),
                }
            }
            Event::Eof => return Err("the document ended early".into()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn xml_round_trips_eureka_shapes() {
        let value = json!({
            "hostName": "h&1",
            "port": {"$": 8080, "@enabled": "true"},
            "metadata": {"@class": "java.util.Collections$EmptyMap"},
            "application": [{"name": "A"}, {"name": "B"}],
        });
        let xml = to_xml("instance", &value);
        assert!(xml.contains(r#"<port enabled="true">8080</port>"#), "{xml}");
        assert!(xml.contains("<hostName>h&amp;1</hostName>"), "{xml}");
        let (root, back) = from_xml(&xml).unwrap();
        assert_eq!(root, "instance");
        assert_eq!(back["hostName"], "h&1");
        assert_eq!(back["port"]["$"], "8080");
        assert_eq!(back["port"]["@enabled"], "true");
        assert_eq!(back["application"][1]["name"], "B");
    }

    #[test]
    fn broken_xml_is_an_error_not_a_panic() {
        for bad in ["", "<a>", "<a></b>", "<a>&bogus;</a>", "</a>"] {
            assert!(from_xml(bad).is_err(), "{bad:?}");
        }
    }
}
