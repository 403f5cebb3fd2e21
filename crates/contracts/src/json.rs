//! JSON to Avro, against a schema, with every problem reported by field: how a command posted as JSON
//! (the gateway) or typed by hand (the CLI) becomes an Avro record, or a list of field errors a person
//! can fix in one go.
//!
//! The JSON is the plain shape a person writes, not Avro's JSON encoding: a union value is given as
//! itself (`"expected_version": 3`, not `{"long": 3}`), and fields with a default may be left out.

use std::collections::HashMap;
use std::fmt;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema};
use apache_avro::types::Value;
use serde_json::Value as Json;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where, e.g. `lines[1].quantity` (empty for the whole value).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// `json` as an Avro value of `schema`, or every field error found.
pub fn to_avro(schema: &Schema, json: &Json) -> Result<Value, Vec<FieldError>> {
    let names = crate::compat::named_types(schema);
    let mut errors = Vec::new();
    let value = convert(schema, json, "", &names, &mut errors);
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn convert(
    schema: &Schema,
    json: &Json,
    path: &str,
    names: &HashMap<String, &Schema>,
    errors: &mut Vec<FieldError>,
) -> Value {
    let mut fail = |message: String| {
        errors.push(FieldError {
            field: path.to_string(),
            message,
        });
        Value::Null
    };
    match (schema, json) {
        (Schema::Ref { name }, _) => match names.get(&name.fullname(None)) {
            Some(target) => convert(target, json, path, names, errors),
            None => fail(format!("unknown type {}", name.fullname(None))),
        },
        (Schema::Null, Json::Null) => Value::Null,
        (Schema::Boolean, Json::Bool(b)) => Value::Boolean(*b),
        (Schema::Int | Schema::Date | Schema::TimeMillis, Json::Number(n)) => {
            match n.as_i64().and_then(|v| i32::try_from(v).ok()) {
                Some(v) => match schema {
                    Schema::Date => Value::Date(v),
                    Schema::TimeMillis => Value::TimeMillis(v),
                    _ => Value::Int(v),
                },
                None => fail(format!(
                    "expected a whole number between {} and {}, got {n}",
                    i32::MIN,
                    i32::MAX
                )),
            }
        }
        (
            Schema::Long
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimeMicros
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros,
            Json::Number(n),
        ) => match n.as_i64() {
            Some(v) => match schema {
                Schema::TimestampMillis => Value::TimestampMillis(v),
                Schema::TimestampMicros => Value::TimestampMicros(v),
                Schema::TimeMicros => Value::TimeMicros(v),
                Schema::LocalTimestampMillis => Value::LocalTimestampMillis(v),
                Schema::LocalTimestampMicros => Value::LocalTimestampMicros(v),
                _ => Value::Long(v),
            },
            None => fail(format!("expected a whole number, got {n}")),
        },
        (Schema::Float, Json::Number(n)) => n.as_f64().map_or_else(
            || fail("expected a number".into()),
            |v| Value::Float(v as f32),
        ),
        (Schema::Double, Json::Number(n)) => n
            .as_f64()
            .map_or_else(|| fail("expected a number".into()), Value::Double),
        (Schema::String, Json::String(s)) => Value::String(s.clone()),
        (Schema::Uuid(_), Json::String(s)) => match s.parse() {
            Ok(u) => Value::Uuid(u),
            Err(_) => fail(format!("{s:?} is not a UUID")),
        },
        (Schema::Bytes, Json::String(s)) => Value::Bytes(s.as_bytes().to_vec()),
        (Schema::Enum(e), Json::String(s)) => match e.symbols.iter().position(|sym| sym == s) {
            Some(i) => Value::Enum(u32::try_from(i).unwrap_or(u32::MAX), s.clone()),
            None => fail(format!("{s:?} is not one of {}", e.symbols.join(", "))),
        },
        (Schema::Fixed(f), Json::String(s)) if s.len() == f.size => {
            Value::Fixed(f.size, s.as_bytes().to_vec())
        }
        (Schema::Array(a), Json::Array(items)) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(&a.items, item, &format!("{path}[{i}]"), names, errors))
                .collect(),
        ),
        (Schema::Map(m), Json::Object(entries)) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        convert(&m.types, v, &join(path, k), names, errors),
                    )
                })
                .collect(),
        ),
        (Schema::Record(r), Json::Object(fields)) => record(r, fields, path, names, errors),
        (Schema::Union(u), _) => {
            // A value given as itself: the first branch it converts to without a problem.
            for (i, branch) in u.variants().iter().enumerate() {
                let mut trial = Vec::new();
                let value = convert(branch, json, path, names, &mut trial);
                if trial.is_empty() {
                    return Value::Union(u32::try_from(i).unwrap_or(u32::MAX), Box::new(value));
                }
            }
            let expected: Vec<String> = u.variants().iter().map(describe).collect();
            fail(format!(
                "expected {}, got {}",
                expected.join(" or "),
                kind(json)
            ))
        }
        (Schema::Record(_) | Schema::Map(_), _) => {
            fail(format!("expected an object, got {}", kind(json)))
        }
        (Schema::Array(_), _) => fail(format!("expected an array, got {}", kind(json))),
        _ => fail(format!("expected {}, got {}", describe(schema), kind(json))),
    }
}

fn record(
    r: &RecordSchema,
    fields: &serde_json::Map<String, Json>,
    path: &str,
    names: &HashMap<String, &Schema>,
    errors: &mut Vec<FieldError>,
) -> Value {
    let mut out = Vec::with_capacity(r.fields.len());
    for field in &r.fields {
        let field_path = join(path, &field.name);
        match (fields.get(&field.name), &field.default) {
            (Some(v), _) => out.push((
                field.name.clone(),
                convert(&field.schema, v, &field_path, names, errors),
            )),
            // A default is written in the schema's own JSON form: for a union, the first branch's.
            (None, Some(default)) => {
                let value = match &field.schema {
                    Schema::Union(u) => {
                        let first = u.variants().first().cloned().unwrap_or(Schema::Null);
                        let v = convert(&first, default, &field_path, names, errors);
                        Value::Union(0, Box::new(v))
                    }
                    other => convert(other, default, &field_path, names, errors),
                };
                out.push((field.name.clone(), value));
            }
            (None, None) => {
                errors.push(FieldError {
                    field: field_path,
                    message: "is required".into(),
                });
            }
        }
    }
    for name in fields.keys() {
        if !r.fields.iter().any(|f| &f.name == name) {
            errors.push(FieldError {
                field: join(path, name),
                message: format!("is not a field of {}", r.name.fullname(None)),
            });
        }
    }
    Value::Record(out)
}

fn describe(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "a boolean".into(),
        Schema::Int | Schema::Date | Schema::TimeMillis => "a whole number (int)".into(),
        Schema::Long
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimeMicros
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros => "a whole number (long)".into(),
        Schema::Float | Schema::Double => "a number".into(),
        Schema::String | Schema::Uuid(_) => "a string".into(),
        Schema::Bytes => "bytes as a string".into(),
        Schema::Enum(e) => format!("one of {}", e.symbols.join(", ")),
        Schema::Fixed(f) => format!("a string of {} bytes", f.size),
        Schema::Array(_) => "an array".into(),
        Schema::Map(_) | Schema::Record(_) => "an object".into(),
        Schema::Ref { name } => name_of(name),
        other => format!("{other:?}"),
    }
}

fn name_of(name: &Name) -> String {
    name.fullname(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn place_order() -> Schema {
        crate::schema::parse(
            r#"{"type":"record","name":"PlaceOrder","namespace":"shop","fields":[
                {"name":"command_id","type":"string"},
                {"name":"expected_version","type":["null","long"],"default":null},
                {"name":"issued_at","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
                {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
                    {"name":"sku","type":"string"},{"name":"quantity","type":"int"}]}}},
                {"name":"priority","type":{"type":"enum","name":"Priority","symbols":["LOW","HIGH"]},"default":"LOW"},
                {"name":"note","type":"string","default":""}]}"#,
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn encode(schema: &Schema, value: Value) -> Result<Vec<u8>, String> {
        apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .and_then(|w| w.write_value_to_vec(value))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_hand_written_command_converts_with_defaults_filled_in() {
        let schema = place_order();
        let value = to_avro(
            &schema,
            &json!({ "command_id": "c1", "expected_version": 3, "lines": [{ "sku": "tea", "quantity": 2 }] }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let Value::Record(fields) = &value else {
            panic!("not a record: {value:?}")
        };
        assert_eq!(
            fields[1],
            (
                "expected_version".into(),
                Value::Union(1, Box::new(Value::Long(3)))
            )
        );
        assert_eq!(
            fields[2],
            ("issued_at".into(), Value::Union(0, Box::new(Value::Null)))
        );
        assert_eq!(fields[4], ("priority".into(), Value::Enum(0, "LOW".into())));
        assert!(
            encode(&schema, value).is_ok(),
            "the value encodes with the schema"
        );
    }

    #[test]
    fn every_problem_is_reported_by_field() {
        let errors = to_avro(
            &place_order(),
            &json!({
                "expected_version": "three",
                "lines": [{ "sku": "tea", "quantity": 2 }, { "sku": 5, "quantity": 3000000000u64 }],
                "priority": "URGENT",
                "colour": "red"
            }),
        )
        .err()
        .unwrap_or_default();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "command_id: is required",
                "expected_version: expected null or a whole number (long), got a string",
                "lines[1].sku: expected a string, got a number",
                "lines[1].quantity: expected a whole number between -2147483648 and 2147483647, got 3000000000",
                "priority: \"URGENT\" is not one of LOW, HIGH",
                "colour: is not a field of shop.PlaceOrder",
            ]
        );
        let not_object = to_avro(&place_order(), &json!([1]))
            .err()
            .unwrap_or_default();
        assert_eq!(
            not_object[0].to_string(),
            "expected an object, got an array"
        );
    }
}
