//! The compatibility checker against Avro's reference checker (the Python `avro` package, which mirrors
//! Java's `SchemaCompatibility`): the same schema pairs, the same verdict in both directions.

use std::io::Write;
use std::process::{Command, Stdio};

use causeway_contracts::compat::incompatibilities;
use causeway_contracts::schema;
use causeway_testcontainers::native::{python, python_script};
use serde_json::{Value, json};

fn rec(fields: Value) -> Value {
    json!({ "type": "record", "name": "Order", "namespace": "shop", "fields": fields })
}

fn enm(symbols: &[&str], default: Option<&str>) -> Value {
    let mut e =
        json!({ "type": "enum", "name": "Status", "namespace": "shop", "symbols": symbols });
    if let Some(d) = default {
        e["default"] = json!(d);
    }
    e
}

/// (case, old schema, new schema)
fn cases() -> Vec<(&'static str, Value, Value)> {
    let id = json!({ "name": "id", "type": "string" });
    vec![
        (
            "field added with default",
            rec(json!([id])),
            rec(json!([id, { "name": "n", "type": "int", "default": 0 }])),
        ),
        (
            "field added without default",
            rec(json!([id])),
            rec(json!([id, { "name": "n", "type": "int" }])),
        ),
        (
            "field removed (it had a default)",
            rec(json!([id, { "name": "n", "type": "int", "default": 0 }])),
            rec(json!([id])),
        ),
        (
            "field removed (no default)",
            rec(json!([id, { "name": "n", "type": "int" }])),
            rec(json!([id])),
        ),
        (
            "int promoted to long",
            rec(json!([{ "name": "n", "type": "int" }])),
            rec(json!([{ "name": "n", "type": "long" }])),
        ),
        (
            "long narrowed to int",
            rec(json!([{ "name": "n", "type": "long" }])),
            rec(json!([{ "name": "n", "type": "int" }])),
        ),
        ("float to double", json!("float"), json!("double")),
        ("string to bytes", json!("string"), json!("bytes")),
        ("int to string", json!("int"), json!("string")),
        (
            "enum symbol added",
            enm(&["NEW", "PAID"], None),
            enm(&["NEW", "PAID", "SHIPPED"], None),
        ),
        (
            "enum symbol removed",
            enm(&["NEW", "PAID", "SHIPPED"], None),
            enm(&["NEW", "PAID"], None),
        ),
        (
            "enum symbol removed, reader default",
            enm(&["NEW", "PAID", "SHIPPED"], Some("NEW")),
            enm(&["NEW", "PAID"], Some("NEW")),
        ),
        (
            "union widened",
            json!(["null", "int"]),
            json!(["null", "int", "string"]),
        ),
        (
            "union narrowed",
            json!(["null", "int", "string"]),
            json!(["null", "int"]),
        ),
        ("type made nullable", json!("int"), json!(["null", "int"])),
        (
            "nullable made required",
            json!(["null", "int"]),
            json!("int"),
        ),
        (
            "field renamed with alias",
            rec(json!([{ "name": "total", "type": "long" }])),
            rec(json!([{ "name": "amount", "type": "long", "aliases": ["total"] }])),
        ),
        (
            "field renamed without alias",
            rec(json!([{ "name": "total", "type": "long" }])),
            rec(json!([{ "name": "amount", "type": "long" }])),
        ),
        (
            "record renamed with alias",
            rec(json!([id])),
            json!({ "type": "record", "name": "Purchase", "namespace": "shop", "aliases": ["shop.Order"], "fields": [id] }),
        ),
        (
            "array items promoted",
            json!({ "type": "array", "items": "int" }),
            json!({ "type": "array", "items": "long" }),
        ),
        (
            "map values changed",
            json!({ "type": "map", "values": "int" }),
            json!({ "type": "map", "values": "boolean" }),
        ),
        (
            "fixed size changed",
            json!({ "type": "fixed", "name": "H", "size": 16 }),
            json!({ "type": "fixed", "name": "H", "size": 32 }),
        ),
        (
            "nested record field added without default",
            rec(
                json!([{ "name": "line", "type": { "type": "record", "name": "Line", "fields": [{ "name": "sku", "type": "string" }] } }]),
            ),
            rec(
                json!([{ "name": "line", "type": { "type": "record", "name": "Line", "fields": [
                { "name": "sku", "type": "string" }, { "name": "qty", "type": "int" }] } }]),
            ),
        ),
        (
            "logical date read as int",
            json!({ "type": "int", "logicalType": "date" }),
            json!("int"),
        ),
        (
            "recursive list unchanged",
            json!({ "type": "record", "name": "Node", "fields": [{ "name": "next", "type": ["null", "Node"] }] }),
            json!({ "type": "record", "name": "Node", "fields": [{ "name": "next", "type": ["null", "Node"] }] }),
        ),
    ]
}

fn ours(writer: &Value, reader: &Value) -> bool {
    let w = schema::parse(&writer.to_string(), &[]).unwrap_or_else(|e| panic!("{writer}: {e}"));
    let r = schema::parse(&reader.to_string(), &[]).unwrap_or_else(|e| panic!("{reader}: {e}"));
    incompatibilities(&w, &r).is_ok_and(|p| p.is_empty())
}

#[test]
fn verdicts_match_avros_reference_checker() {
    let cases = cases();
    // Each case twice: backward (the new schema reads old data) and forward (the old reads new data).
    let pairs: Vec<Value> = cases
        .iter()
        .flat_map(|(_, old, new)| {
            [
                json!({ "writer": old, "reader": new }),
                json!({ "writer": new, "reader": old }),
            ]
        })
        .collect();
    let mut child = Command::new(python())
        .arg(python_script("avro_reference.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the reference checker: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(Value::Array(pairs).to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference: Vec<Value> =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reference.len(), cases.len() * 2);

    let mut table = String::new();
    let mut disagreements = 0;
    for (i, (name, old, new)) in cases.iter().enumerate() {
        let ours = [ours(old, new), ours(new, old)];
        let theirs = [
            reference[2 * i]["compatible"].as_bool().unwrap_or(false),
            reference[2 * i + 1]["compatible"]
                .as_bool()
                .unwrap_or(false),
        ];
        let mark = if ours == theirs { "" } else { "  <-- differs" };
        if ours != theirs {
            disagreements += 1;
        }
        table.push_str(&format!(
            "{name:<45} backward ours={:<5} avro={:<5} forward ours={:<5} avro={:<5}{mark}\n",
            ours[0], theirs[0], ours[1], theirs[1]
        ));
    }
    assert_eq!(
        disagreements, 0,
        "verdicts differ from Avro's reference checker:\n{table}"
    );

    // And the matrix is not trivially agreeable: both verdicts occur.
    let backward: Vec<bool> = cases.iter().map(|(_, old, new)| ours(old, new)).collect();
    assert!(
        backward.contains(&true) && backward.contains(&false),
        "{table}"
    );
}
