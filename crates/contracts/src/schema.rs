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
/// dependency order: a referenced schema's own references come before it). References are inlined at
/// their first use, so the parsed schema is self-contained (the compatibility checker sees every
/// definition).
pub fn parse(text: &str, referenced: &[String]) -> Result<Schema, String> {
    if referenced.is_empty() {
        return Schema::parse_str(text).map_err(|e| e.to_string());
    }
    Schema::parse_str(&inline_references(text, referenced)?).map_err(|e| e.to_string())
}

/// `text` with each referenced type's definition written in at its first use: a self-contained schema
/// (canonical text) that any Avro library parses without knowing about references.
pub fn inline_references(text: &str, referenced: &[String]) -> Result<String, String> {
    let mut value: Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut definitions = Vec::with_capacity(referenced.len());
    for r in referenced {
        let def: Value = serde_json::from_str(r)
            .map_err(|e| format!("a referenced schema is not valid JSON: {e}"))?;
        let name = full_name(&def, None).ok_or("a referenced schema is not a named type")?;
        definitions.push((name, def));
    }
    let mut defined = std::collections::HashSet::new();
    inline(&mut value, None, &definitions, &mut defined);
    canonical(&value.to_string())
}

fn full_name(value: &Value, enclosing: Option<&str>) -> Option<String> {
    let name = value.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_string());
    }
    match value.get("namespace").and_then(Value::as_str).or(enclosing) {
        Some(ns) if !ns.is_empty() => Some(format!("{ns}.{name}")),
        _ => Some(name.to_string()),
    }
}

/// Replace the first use of each referenced name (in document order, which is Avro's definition order)
/// by its definition.
fn inline(
    value: &mut Value,
    namespace: Option<&str>,
    defs: &[(String, Value)],
    defined: &mut std::collections::HashSet<String>,
) {
    match value {
        Value::String(name) => {
            let wanted = defs.iter().find(|(full, _)| {
                full == name || namespace.is_some_and(|ns| *full == format!("{ns}.{name}"))
            });
            if let Some((full, def)) = wanted
                && defined.insert(full.clone())
            {
                let mut def = def.clone();
                let ns = full.rsplit_once('.').map(|(ns, _)| ns.to_string());
                inline(&mut def, ns.as_deref(), defs, defined);
                *value = def;
            }
        }
        Value::Array(branches) => {
            for b in branches {
                inline(b, namespace, defs, defined);
            }
        }
        Value::Object(map) => {
            // A named type defined here: its name is taken, and it sets the namespace inside it.
            let is_definition = map.contains_key("name")
                && (map.contains_key("fields")
                    || map.contains_key("symbols")
                    || map.contains_key("size"));
            let own = is_definition
                .then(|| full_name(&Value::Object(map.clone()), namespace))
                .flatten();
            if let Some(full) = &own {
                defined.insert(full.clone());
            }
            let ns = own
                .as_deref()
                .and_then(|f| f.rsplit_once('.').map(|(ns, _)| ns.to_string()))
                .or(namespace.map(str::to_string));
            for key in ["type", "items", "values"] {
                if let Some(v) = map.get_mut(key) {
                    inline(v, ns.as_deref(), defs, defined);
                }
            }
            if let Some(Value::Array(fields)) = map.get_mut("fields") {
                for f in fields {
                    inline(f, ns.as_deref(), defs, defined);
                }
            }
        }
        _ => {}
    }
}

/// Check that a Rust type and a schema describe the same record: `value` converts to an Avro value with
/// exactly the schema's fields (no more, no fewer, at every level), encodes with the schema, and decodes
/// back to an equal value. Tests call it for every contract type, so a type cannot drift from its file.
pub fn round_trip<T>(schema: &Schema, value: &T) -> Result<T, String>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let avro = apache_avro::to_value(value).map_err(|e| format!("cannot convert to Avro: {e}"))?;
    same_fields(&avro, schema, "")?;
    let resolved = avro
        .resolve(schema)
        .map_err(|e| format!("does not fit the schema: {e}"))?;
    let bytes = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(resolved))
        .map_err(|e| format!("cannot encode: {e}"))?;
    let back = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .and_then(|r| r.read_value(&mut bytes.as_slice()))
        .map_err(|e| format!("cannot decode: {e}"))?;
    apache_avro::from_value::<T>(&back).map_err(|e| format!("cannot convert back: {e}"))
}

fn same_fields(
    value: &apache_avro::types::Value,
    schema: &Schema,
    path: &str,
) -> Result<(), String> {
    use apache_avro::types::Value as V;
    match (value, schema) {
        (V::Record(fields), Schema::Record(record)) => {
            let ours: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
            let theirs: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            if ours != theirs {
                return Err(format!(
                    "{}: the type has fields {ours:?}, the schema {theirs:?}",
                    if path.is_empty() {
                        record.name.fullname(None)
                    } else {
                        path.to_string()
                    }
                ));
            }
            for ((name, v), f) in fields.iter().zip(&record.fields) {
                same_fields(v, &f.schema, &format!("{path}/{name}"))?;
            }
            Ok(())
        }
        (V::Array(items), Schema::Array(a)) => items
            .iter()
            .try_for_each(|item| same_fields(item, &a.items, &format!("{path}[]"))),
        (_, Schema::Union(u)) if !matches!(value, V::Null) => u
            .variants()
            .iter()
            .find(|v| !matches!(v, Schema::Null))
            .map_or(Ok(()), |inner| same_fields(value, inner, path)),
        _ => Ok(()),
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
    fn references_are_inlined_so_checks_see_them() {
        use crate::compat::incompatibilities;
        let line = r#"{"type":"record","name":"Line","namespace":"x","fields":[{"name":"sku","type":"string"}]}"#;
        let line2 = r#"{"type":"record","name":"Line","namespace":"x","fields":[{"name":"sku","type":"string"},{"name":"q","type":"int"}]}"#;
        let order = r#"{"type":"record","name":"Order","namespace":"x","fields":[{"name":"a","type":"x.Line"},{"name":"b","type":{"type":"array","items":"Line"}}]}"#;
        let old = parse(order, &[line.to_string()]).unwrap_or_else(|e| panic!("{e}"));
        let new = parse(order, &[line2.to_string()]).unwrap_or_else(|e| panic!("{e}"));
        assert!(incompatibilities(&old, &old).is_ok_and(|p| p.is_empty()));
        let problems = incompatibilities(&old, &new).unwrap_or_else(|e| panic!("{e}"));
        assert!(problems.iter().any(|p| p.contains("'q'")), "{problems:?}");
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
