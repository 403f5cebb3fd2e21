//! Avro schema text: validation (with references to other subjects' types) and the canonical text that
//! identifies a schema. Two registrations of the same schema, whatever their whitespace or key order, get
//! the same canonical text and so the same id; anything that changes meaning (a default, a doc, field
//! order) gives another.

use apache_avro::Schema;
use serde_json::Value;

/// The canonical text of a JSON schema: compact, object keys sorted, arrays in their order.
pub fn canonical(text: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut out = String::with_capacity(text.len());
    write_canonical(&value, &mut out);
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Parse `text` as an Avro schema; `referenced` are the texts of the schemas its references name (in
/// dependency order: a referenced schema's own references come before it).
pub fn parse(text: &str, referenced: &[String]) -> Result<Schema, String> {
    if referenced.is_empty() {
        Schema::parse_str(text).map_err(|e| e.to_string())
    } else {
        Schema::parse_str_with_list(text, referenced)
            .map(|(schema, _)| schema)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_key_order_do_not_matter_but_content_does() -> Result<(), String> {
        let a = canonical(r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#)?;
        let b = canonical(
            "{ \"fields\" : [ {\"type\": \"int\", \"name\": \"x\"} ],\n \"name\": \"A\", \"type\": \"record\" }",
        )?;
        assert_eq!(a, b);
        let c = canonical(
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int","default":0}]}"#,
        )?;
        assert_ne!(a, c);
        assert_eq!(canonical(" \"string\" ")?, "\"string\"");
        Ok(())
    }

    #[test]
    fn parse_reports_what_is_wrong() {
        assert!(parse(r#"{"type":"record","name":"A","fields":[]}"#, &[]).is_ok());
        let err = parse(r#"{"type":"recrod","name":"A"}"#, &[])
            .err()
            .unwrap_or_default();
        assert!(!err.is_empty());
        let with_ref = parse(
            r#"{"type":"record","name":"B","fields":[{"name":"a","type":"A"}]}"#,
            &[r#"{"type":"record","name":"A","fields":[]}"#.to_string()],
        );
        assert!(with_ref.is_ok(), "{with_ref:?}");
        assert!(
            parse(
                r#"{"type":"record","name":"B","fields":[{"name":"a","type":"A"}]}"#,
                &[]
            )
            .is_err()
        );
    }
}
