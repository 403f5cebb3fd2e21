//! Compatibility checks between a candidate schema and a subject's registered versions, under a
//! [`Level`]. The reader/writer rules are Avro's schema resolution (apache-avro's checker); a result the
//! checker calls `Partial` (a writer's enum symbol or union branch the reader lacks: reading may fail)
//! is treated as incompatible, as Avro's reference checker does.

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use crate::model::Level;

/// One registered version to check against.
#[derive(Debug)]
pub struct Previous<'a> {
    /// Its version number.
    pub version: i32,
    /// Its parsed schema.
    pub schema: &'a Schema,
}

/// Every incompatibility of `candidate` with `previous` (oldest first) under `level`, as messages that
/// name the version, the direction and Avro's reason. Empty when compatible.
pub fn check(level: Level, candidate: &Schema, previous: &[Previous<'_>]) -> Vec<String> {
    let (backward, forward, transitive) = match level {
        Level::None => return Vec::new(),
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
        if backward && let Some(why) = reads(p.schema, candidate) {
            messages.push(format!(
                "{}: the new schema cannot read data written with version {}: {why}",
                level.as_str(),
                p.version
            ));
        }
        if forward && let Some(why) = reads(candidate, p.schema) {
            messages.push(format!(
                "{}: version {} cannot read data written with the new schema: {why}",
                level.as_str(),
                p.version
            ));
        }
    }
    messages
}

/// Why `reader` cannot read what `writer` wrote, or `None` when it always can.
fn reads(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => Some(
            "the reader lacks an enum symbol or a union branch the writer can produce, so reading may fail"
                .into(),
        ),
        Err(e) => Some(error_chain(&e)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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
        let backward = check(Level::Backward, &v2, &prev);
        assert_eq!(backward.len(), 1, "{backward:?}");
        assert!(
            backward[0].contains("'b'") && backward[0].contains("default"),
            "{backward:?}"
        );
        assert!(check(Level::Forward, &v2, &prev).is_empty());
        assert_eq!(check(Level::Full, &v2, &prev).len(), 1);
        assert!(check(Level::None, &v2, &prev).is_empty());
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
        assert!(check(Level::Backward, &v3, &prev).is_empty());
        let transitive = check(Level::BackwardTransitive, &v3, &prev);
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
        assert_eq!(check(Level::Backward, &v2, &prev).len(), 1);
        assert!(check(Level::Forward, &v2, &prev).is_empty());
    }
}
