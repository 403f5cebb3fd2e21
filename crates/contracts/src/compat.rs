//! Compatibility checks between a candidate schema and a subject's registered versions, under a
//! [`Level`].
//!
//! The reader/writer rules are Avro's schema resolution, checked here rather than by apache-avro's
//! checker, which stops at the first problem, ignores aliases and reader enum defaults, and answers
//! "partially" for enums and unions (docs/adr/0006-schema-registry.md). This one follows Avro's reference
//! checker (Java's `SchemaCompatibility`, mirrored by the Python `avro` package, which the tests compare
//! against): logical types are read as their underlying type; names match by name or by the reader's
//! aliases; every problem is reported, each with the path in the schema, the field or symbol it
//! concerns, and the rule it breaks.

use std::collections::{HashMap, HashSet};

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema};
use serde::{Deserialize, Serialize};

/// Compatibility levels, as the REST API and the topic spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// No check.
    None,
    /// The new schema can read data written with the latest one.
    Backward,
    /// ... with every earlier one.
    BackwardTransitive,
    /// Data written with the new schema can be read with the latest one.
    Forward,
    /// ... with every earlier one.
    ForwardTransitive,
    /// Backward and forward against the latest.
    Full,
    /// Backward and forward against every earlier one.
    FullTransitive,
}

impl Level {
    /// Parse the API's spelling, case-insensitively (clients differ).
    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_ascii_uppercase())).ok()
    }

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }
}

/// One registered version to check against.
#[derive(Debug)]
pub struct Previous<'a> {
    /// Its version number.
    pub version: i32,
    /// Its parsed schema.
    pub schema: &'a Schema,
}

/// Most comparison steps one check may take before it is refused as too complex. Comparisons of a pair
/// of named types are remembered, so a real schema needs a few thousand at most; the bound keeps a
/// hostile one (deeply nested, with many branches) from holding a registry's worker for minutes.
pub const MAX_STEPS: usize = 200_000;

/// Most problems one check reports (the first ones, in schema order).
pub const MAX_PROBLEMS: usize = 100;

/// A check that would take more than [`MAX_STEPS`] steps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the schema is too complex to check for compatibility (more than {MAX_STEPS} comparison steps)"
)]
pub struct TooComplex;

/// Every incompatibility of `candidate` with `previous` (oldest first) under `level`, as messages that
/// name the version, the direction and Avro's reason. Empty when compatible.
pub fn check(
    level: Level,
    candidate: &Schema,
    previous: &[Previous<'_>],
) -> Result<Vec<String>, TooComplex> {
    let (backward, forward, transitive) = match level {
        Level::None => return Ok(Vec::new()),
        Level::Backward => (true, false, false),
        Level::BackwardTransitive => (true, false, true),
        Level::Forward => (false, true, false),
        Level::ForwardTransitive => (false, true, true),
        Level::Full => (true, true, false),
        Level::FullTransitive => (true, true, true),
    };
    let against: &[Previous<'_>] = if transitive {
        previous
    } else {
        previous.last().map(std::slice::from_ref).unwrap_or(&[])
    };
    let mut messages = Vec::new();
    for p in against.iter().rev() {
        if backward && let Some(why) = reads(p.schema, candidate)? {
            messages.push(format!(
                "{}: the new schema cannot read data written with version {}: {why}",
                level.as_str(),
                p.version
            ));
        }
        if forward && let Some(why) = reads(candidate, p.schema)? {
            messages.push(format!(
                "{}: version {} cannot read data written with the new schema: {why}",
                level.as_str(),
                p.version
            ));
        }
    }
    Ok(messages)
}

/// Why `reader` cannot read what `writer` wrote (every reason, joined), or `None` when it always can.
fn reads(writer: &Schema, reader: &Schema) -> Result<Option<String>, TooComplex> {
    let problems = incompatibilities(writer, reader)?;
    Ok((!problems.is_empty()).then(|| problems.join("; ")))
}

/// Every reason a reader with `reader` cannot read data written with `writer` (at most
/// [`MAX_PROBLEMS`]); empty when it can.
pub fn incompatibilities(writer: &Schema, reader: &Schema) -> Result<Vec<String>, TooComplex> {
    let mut checker = Checker {
        writer_names: named_types(writer),
        reader_names: named_types(reader),
        in_progress: HashSet::new(),
        compared: HashMap::new(),
        problems: Vec::new(),
        steps: 0,
        assumed: 0,
    };
    checker.check(writer, reader, "");
    if checker.steps > MAX_STEPS {
        return Err(TooComplex);
    }
    Ok(checker
        .problems
        .into_iter()
        .take(MAX_PROBLEMS)
        .map(|(path, message)| {
            let at = if path.is_empty() { "/" } else { path.as_str() };
            format!("at {at}: {message}")
        })
        .collect())
}

struct Checker<'a> {
    writer_names: HashMap<String, &'a Schema>,
    reader_names: HashMap<String, &'a Schema>,
    /// Pairs of named types being compared; meeting one again (a recursive type) is assumed compatible.
    in_progress: HashSet<(String, String)>,
    /// Pairs of named record types compared already, with their problems (paths relative to the pair):
    /// a type used in many places is compared once, not once per place (which is exponential in the
    /// nesting depth of a type with two fields of the type below it).
    compared: HashMap<(String, String), Vec<(String, String)>>,
    /// (path, message) of each problem found.
    problems: Vec<(String, String)>,
    steps: usize,
    /// How often a pair being compared was met again and assumed compatible: a pair whose comparison
    /// leaned on that assumption is not remembered (its verdict depends on its ancestors').
    assumed: usize,
}

/// Every named type defined in `schema`, by full name (to resolve `Ref`s).
pub(crate) fn named_types(schema: &Schema) -> HashMap<String, &Schema> {
    fn walk<'a>(schema: &'a Schema, out: &mut HashMap<String, &'a Schema>) {
        match schema {
            // A name seen before is a recursive reference: its fields are walked once.
            Schema::Record(r) if out.insert(r.name.fullname(None), schema).is_none() => {
                for f in &r.fields {
                    walk(&f.schema, out);
                }
            }
            Schema::Enum(e) => {
                out.insert(e.name.fullname(None), schema);
            }
            Schema::Fixed(f) | Schema::Duration(f) => {
                out.insert(f.name.fullname(None), schema);
            }
            Schema::Array(a) => walk(&a.items, out),
            Schema::Map(m) => walk(&m.types, out),
            Schema::Union(u) => u.variants().iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    walk(schema, &mut out);
    out
}

/// The type the encoding uses: logical types are read as their underlying type (as Avro's checker does).
#[derive(Debug, Clone, Copy)]
enum Shape<'a> {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(&'a Schema),
    Map(&'a Schema),
    Union(&'a [Schema]),
    Record(&'a RecordSchema),
    Enum(&'a apache_avro::schema::EnumSchema),
    Fixed(&'a apache_avro::schema::FixedSchema),
    Unresolved(&'a Name),
}

impl Shape<'_> {
    fn describe(&self) -> String {
        match self {
            Shape::Null => "null".into(),
            Shape::Boolean => "boolean".into(),
            Shape::Int => "int".into(),
            Shape::Long => "long".into(),
            Shape::Float => "float".into(),
            Shape::Double => "double".into(),
            Shape::Bytes => "bytes".into(),
            Shape::String => "string".into(),
            Shape::Array(_) => "array".into(),
            Shape::Map(_) => "map".into(),
            Shape::Union(_) => "union".into(),
            Shape::Record(r) => format!("record {}", r.name.fullname(None)),
            Shape::Enum(e) => format!("enum {}", e.name.fullname(None)),
            Shape::Fixed(f) => format!("fixed {}", f.name.fullname(None)),
            Shape::Unresolved(n) => format!("unknown type {}", n.fullname(None)),
        }
    }
}

fn shape<'a>(schema: &'a Schema, names: &HashMap<String, &'a Schema>) -> Shape<'a> {
    use apache_avro::schema::{InnerDecimalSchema, UuidSchema};
    match schema {
        Schema::Null => Shape::Null,
        Schema::Boolean => Shape::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Shape::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Shape::Long,
        Schema::Float => Shape::Float,
        Schema::Double => Shape::Double,
        Schema::Bytes | Schema::BigDecimal => Shape::Bytes,
        Schema::String => Shape::String,
        Schema::Uuid(UuidSchema::String) => Shape::String,
        Schema::Uuid(UuidSchema::Bytes) => Shape::Bytes,
        Schema::Uuid(UuidSchema::Fixed(f)) | Schema::Fixed(f) | Schema::Duration(f) => {
            Shape::Fixed(f)
        }
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Bytes => Shape::Bytes,
            InnerDecimalSchema::Fixed(f) => Shape::Fixed(f),
        },
        Schema::Array(a) => Shape::Array(&a.items),
        Schema::Map(m) => Shape::Map(&m.types),
        Schema::Union(u) => Shape::Union(u.variants()),
        Schema::Record(r) => Shape::Record(r),
        Schema::Enum(e) => Shape::Enum(e),
        Schema::Ref { name } => match names.get(&name.fullname(None)) {
            Some(target) => shape(target, names),
            None => Shape::Unresolved(name),
        },
    }
}

/// Whether the reader's name (or one of its aliases) matches the writer's, as Avro resolves names:
/// unqualified names equal, or the writer's full name among the reader's aliases.
fn names_match(
    writer: &Name,
    reader: &Name,
    reader_aliases: Option<&Vec<apache_avro::schema::Alias>>,
) -> bool {
    let writer_full = writer.fullname(None);
    writer.name() == reader.name()
        || reader_aliases.is_some_and(|aliases| {
            aliases
                .iter()
                .any(|a| a.fullname(reader.namespace()) == writer_full || a.name() == writer.name())
        })
}

impl<'a> Checker<'a> {
    fn fail(&mut self, path: &str, message: String) {
        self.problems.push((path.to_string(), message));
    }

    fn check(&mut self, writer: &'a Schema, reader: &'a Schema, path: &str) {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return;
        }
        let w = shape(writer, &self.writer_names);
        let r = shape(reader, &self.reader_names);
        match (w, r) {
            (Shape::Union(branches), _) => {
                // Every branch the writer may have used must be readable.
                for (i, branch) in branches.iter().enumerate() {
                    if !self.readable(branch, reader) {
                        let b = shape(branch, &self.writer_names).describe();
                        self.fail(
                            &format!("{path}/{i}"),
                            format!("the writer's union branch {b} cannot be read by the reader's {} (missing union branch)", r.describe()),
                        );
                    }
                }
            }
            (_, Shape::Union(branches)) => {
                if !branches.iter().any(|b| self.readable(writer, b)) {
                    self.fail(
                        path,
                        format!("the reader's union has no branch that can read the writer's {} (missing union branch)", w.describe()),
                    );
                }
            }
            (Shape::Null, Shape::Null)
            | (Shape::Boolean, Shape::Boolean)
            | (Shape::Int, Shape::Int | Shape::Long | Shape::Float | Shape::Double)
            | (Shape::Long, Shape::Long | Shape::Float | Shape::Double)
            | (Shape::Float, Shape::Float | Shape::Double)
            | (Shape::Double, Shape::Double)
            | (Shape::Bytes | Shape::String, Shape::Bytes | Shape::String) => {}
            (Shape::Array(wi), Shape::Array(ri)) => self.check(wi, ri, &format!("{path}/items")),
            (Shape::Map(wv), Shape::Map(rv)) => self.check(wv, rv, &format!("{path}/values")),
            (Shape::Fixed(wf), Shape::Fixed(rf)) => {
                if !names_match(&wf.name, &rf.name, rf.aliases.as_ref()) {
                    self.fail(
                        path,
                        format!(
                            "the reader's {} is not the writer's {} (name mismatch)",
                            r.describe(),
                            w.describe()
                        ),
                    );
                } else if wf.size != rf.size {
                    self.fail(
                        &format!("{path}/size"),
                        format!("{} has size {} for the writer and {} for the reader (fixed size mismatch)", w.describe(), wf.size, rf.size),
                    );
                }
            }
            (Shape::Enum(we), Shape::Enum(re)) => {
                if !names_match(&we.name, &re.name, re.aliases.as_ref()) {
                    self.fail(
                        path,
                        format!(
                            "the reader's {} is not the writer's {} (name mismatch)",
                            r.describe(),
                            w.describe()
                        ),
                    );
                    return;
                }
                let missing: Vec<&str> = we
                    .symbols
                    .iter()
                    .filter(|s| !re.symbols.contains(s))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() && re.default.is_none() {
                    self.fail(
                        &format!("{path}/symbols"),
                        format!(
                            "{} lacks the writer's symbols {} and has no default symbol (missing enum symbols)",
                            r.describe(),
                            missing.join(", ")
                        ),
                    );
                }
            }
            (Shape::Record(wr), Shape::Record(rr)) => self.check_record(wr, rr, path),
            (Shape::Unresolved(_), _) | (_, Shape::Unresolved(_)) => {
                self.fail(
                    path,
                    format!(
                        "cannot resolve {} or {} (unknown type)",
                        w.describe(),
                        r.describe()
                    ),
                );
            }
            _ => self.fail(
                path,
                format!(
                    "the writer's {} cannot be read as the reader's {} (type mismatch)",
                    w.describe(),
                    r.describe()
                ),
            ),
        }
    }

    fn check_record(&mut self, wr: &'a RecordSchema, rr: &'a RecordSchema, path: &str) {
        if !names_match(&wr.name, &rr.name, rr.aliases.as_ref()) {
            self.fail(
                path,
                format!(
                    "the reader's record {} is not the writer's record {} (name mismatch)",
                    rr.name.fullname(None),
                    wr.name.fullname(None)
                ),
            );
            return;
        }
        let key = (wr.name.fullname(None), rr.name.fullname(None));
        if let Some(found) = self.compared.get(&key) {
            // Replaying problems is work too: it counts against the bound.
            self.steps += found.len();
            let found: Vec<(String, String)> = found
                .iter()
                .map(|(rel, message)| (format!("{path}{rel}"), message.clone()))
                .collect();
            for (at, message) in found {
                self.fail(&at, message);
            }
            return;
        }
        if !self.in_progress.insert(key.clone()) {
            self.assumed += 1;
            return;
        }
        let assumed_before = self.assumed;
        // The pair's problems are found with paths relative to it, remembered, then placed at `path`.
        let before = self.problems.len();
        self.check_fields(wr, rr);
        // At most MAX_PROBLEMS kept per pair (never none when there is one: the verdict stands), so
        // that problems do not multiply with every place the pair is used.
        let relative: Vec<(String, String)> =
            self.problems.drain(before..).take(MAX_PROBLEMS).collect();
        self.in_progress.remove(&key);
        for (rel, message) in &relative {
            self.fail(&format!("{path}{rel}"), message.clone());
        }
        if self.assumed == assumed_before {
            self.compared.insert(key, relative);
        }
    }

    fn check_fields(&mut self, wr: &'a RecordSchema, rr: &'a RecordSchema) {
        let path = "";
        for (i, field) in rr.fields.iter().enumerate() {
            let writer_field = wr
                .fields
                .iter()
                .find(|f| f.name == field.name)
                .or_else(|| wr.fields.iter().find(|f| field.aliases.contains(&f.name)));
            let field_path = format!("{path}/fields/{i}");
            match writer_field {
                Some(wf) => self.check(&wf.schema, &field.schema, &format!("{field_path}/type")),
                None if field.default.is_some() => {}
                None => self.fail(
                    &field_path,
                    format!(
                        "field '{}' of record {} is not written by the writer and has no default in the reader (reader field missing default value)",
                        field.name,
                        rr.name.fullname(None)
                    ),
                ),
            }
        }
    }

    /// Whether `reader` reads `writer`, without recording problems.
    fn readable(&mut self, writer: &'a Schema, reader: &'a Schema) -> bool {
        let before = self.problems.len();
        self.check(writer, reader, "");
        let ok = self.problems.len() == before;
        self.problems.truncate(before);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn adding_a_field_without_default_breaks_backward_only() {
        let v1 = schema(r#"{"name":"a","type":"int"}"#);
        let v2 = schema(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#);
        let prev = [Previous {
            version: 1,
            schema: &v1,
        }];
        let backward = check(Level::Backward, &v2, &prev).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(backward.len(), 1, "{backward:?}");
        assert!(
            backward[0].contains("'b'") && backward[0].contains("default"),
            "{backward:?}"
        );
        assert!(
            check(Level::Forward, &v2, &prev)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        assert_eq!(
            check(Level::Full, &v2, &prev)
                .unwrap_or_else(|e| panic!("{e}"))
                .len(),
            1
        );
        assert!(
            check(Level::None, &v2, &prev)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
    }

    #[test]
    fn transitive_checks_every_version_and_latest_only_the_last() {
        let v1 = schema(r#"{"name":"a","type":"int"}"#);
        let v2 = schema(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":""}"#);
        // Drops b's default: reads v2 data, but not v1 data (b missing, no default).
        let v3 = schema(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#);
        let prev = [
            Previous {
                version: 1,
                schema: &v1,
            },
            Previous {
                version: 2,
                schema: &v2,
            },
        ];
        assert!(
            check(Level::Backward, &v3, &prev)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        let transitive =
            check(Level::BackwardTransitive, &v3, &prev).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(transitive.len(), 1, "{transitive:?}");
        assert!(transitive[0].contains("version 1"), "{transitive:?}");
    }

    #[test]
    fn removing_an_enum_symbol_is_incompatible_backward() {
        let e = |symbols: &str| {
            Schema::parse_str(&format!(
                r#"{{"type":"enum","name":"E","symbols":[{symbols}]}}"#
            ))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let (v1, v2) = (e(r#""A","B""#), e(r#""A""#));
        let prev = [Previous {
            version: 1,
            schema: &v1,
        }];
        assert_eq!(
            check(Level::Backward, &v2, &prev)
                .unwrap_or_else(|e| panic!("{e}"))
                .len(),
            1
        );
        assert!(
            check(Level::Forward, &v2, &prev)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
    }

    /// Record T_k has two fields of type T_(k-1): a 30-level schema is 2^30 paths to the bottom.
    fn deep(levels: usize, bottom: &str) -> Schema {
        let mut text = format!(
            r#"{{"type":"record","name":"T0","fields":[{{"name":"v","type":"{bottom}"}}]}}"#
        );
        for k in 1..=levels {
            text = format!(
                r#"{{"type":"record","name":"T{k}","fields":[{{"name":"a","type":{text}}},{{"name":"b","type":"T{}"}}]}}"#,
                k - 1
            );
        }
        Schema::parse_str(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_deeply_shared_type_is_compared_once() {
        let old = deep(30, "int");
        let new = deep(30, "string");
        let problems = incompatibilities(&old, &new).unwrap_or_else(|e| panic!("{e}"));
        assert!(!problems.is_empty(), "int cannot be read as string");
        assert!(problems.len() <= MAX_PROBLEMS);
        assert!(problems[0].contains("/fields/0/type"), "{problems:?}");
        assert!(incompatibilities(&old, &old).is_ok_and(|p| p.is_empty()));
    }

    #[test]
    fn a_check_past_the_step_bound_is_refused() {
        let branches: Vec<String> = (0..1000)
            .map(|i| {
                format!(
                    r#"{{"type":"record","name":"R{i}","fields":[{{"name":"f","type":"int"}}]}}"#
                )
            })
            .collect();
        let union = Schema::parse_str(&format!("[{}]", branches.join(",")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(incompatibilities(&union, &union), Err(TooComplex));
    }
}
