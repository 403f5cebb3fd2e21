//! The records of the `_schemas` topic, in Confluent Schema Registry's own JSON format, so that the topic
//! can be read (and migrated) by Confluent's tools and ours alike; and the enums of the REST API.
//!
//! Keys carry a `keytype`; values are the state after the change. A null value (tombstone) on a SCHEMA
//! key is a permanent delete.

use serde::{Deserialize, Serialize};

pub use causeway_contracts::compat::Level;

/// Registry modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Reads and writes.
    Readwrite,
    /// Reads only: registrations and deletes are refused.
    Readonly,
    /// Registrations must give their id and version (migrations from another registry).
    Import,
}

impl Mode {
    /// Parse the API's spelling, case-insensitively.
    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_ascii_uppercase())).ok()
    }
}

/// A reference from one schema to a named type registered under another subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reference {
    /// The referenced type's full name, as used in the referring schema.
    pub name: String,
    /// The subject it is registered under.
    pub subject: String,
    /// The version of that subject.
    pub version: i32,
}

/// The key of a `_schemas` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Key {
    /// One version of a subject.
    Schema {
        /// The subject.
        subject: String,
        /// The version.
        version: i32,
        /// Format version of the key.
        magic: i32,
    },
    /// A compatibility setting, global when `subject` is null.
    Config {
        /// The subject, or none for the global setting.
        subject: Option<String>,
        /// Format version of the key.
        magic: i32,
    },
    /// A mode setting, global when `subject` is null.
    Mode {
        /// The subject, or none for the global setting.
        subject: Option<String>,
        /// Format version of the key.
        magic: i32,
    },
    /// A subject soft-deleted up to a version.
    DeleteSubject {
        /// The subject.
        subject: String,
        /// Format version of the key.
        magic: i32,
    },
    /// A subject's soft-deleted versions removed.
    ClearSubject {
        /// The subject.
        subject: String,
        /// Format version of the key.
        magic: i32,
    },
    /// Written to learn the log's end; carries nothing.
    Noop {
        /// Format version of the key.
        magic: i32,
    },
}

/// The value of a SCHEMA record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaValue {
    /// The subject.
    pub subject: String,
    /// The version within the subject.
    pub version: i32,
    /// The global schema id.
    pub id: i32,
    /// The schema text.
    pub schema: String,
    /// `AVRO` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    /// References to other subjects' types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// Soft-deleted.
    #[serde(default)]
    pub deleted: bool,
}

/// The value of a CONFIG record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigValue {
    /// The level; a record without one clears the setting.
    #[serde(default)]
    pub compatibility_level: Option<Level>,
}

/// The value of a MODE record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeValue {
    /// The mode; a record without one clears the setting.
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// The value of a DELETE_SUBJECT or CLEAR_SUBJECT record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectValue {
    /// The subject.
    pub subject: String,
    /// The highest version affected.
    pub version: i32,
}

/// The magic number of keys this registry writes (Confluent writes 1 for SCHEMA, 0 for the others).
pub const SCHEMA_KEY_MAGIC: i32 = 1;
/// See [`SCHEMA_KEY_MAGIC`].
pub const OTHER_KEY_MAGIC: i32 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_and_write_confluents_json() -> Result<(), serde_json::Error> {
        let key: Key =
            serde_json::from_str(r#"{"keytype":"SCHEMA","subject":"s","version":2,"magic":1}"#)?;
        assert_eq!(
            key,
            Key::Schema {
                subject: "s".into(),
                version: 2,
                magic: 1
            }
        );
        let global: Key = serde_json::from_str(r#"{"keytype":"CONFIG","subject":null,"magic":0}"#)?;
        assert_eq!(
            global,
            Key::Config {
                subject: None,
                magic: 0
            }
        );
        assert_eq!(
            serde_json::to_string(&Key::DeleteSubject {
                subject: "s".into(),
                magic: 0
            })?,
            r#"{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}"#
        );
        let value: SchemaValue = serde_json::from_str(
            r#"{"subject":"s","version":1,"id":7,"schema":"\"string\"","deleted":false}"#,
        )?;
        assert_eq!(value.id, 7);
        assert_eq!(value.schema_type, None);
        let config: ConfigValue =
            serde_json::from_str(r#"{"compatibilityLevel":"FULL_TRANSITIVE"}"#)?;
        assert_eq!(config.compatibility_level, Some(Level::FullTransitive));
        Ok(())
    }

    #[test]
    fn levels_and_modes_parse_case_insensitively() {
        assert_eq!(
            Level::parse("backward_transitive"),
            Some(Level::BackwardTransitive)
        );
        assert_eq!(Level::parse("SIDEWAYS"), None);
        assert_eq!(Mode::parse("readonly"), Some(Mode::Readonly));
    }
}
