//! The registry's state: what the `_schemas` log says, folded into maps that answer the API's reads.
//! Pure data, no I/O: [`Store::apply`] takes one record of the log, the queries read the result. Every
//! instance folds the same log, so every instance answers the same.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::ApiError;
use crate::model::{
    ConfigValue, Key, Level, Mode, ModeValue, Reference, SchemaValue, SubjectValue,
};

/// A registered schema, shared by every version that uses its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The global id.
    pub id: i32,
    /// Canonical schema text.
    pub schema: String,
    /// `None` for AVRO.
    pub schema_type: Option<String>,
    /// References to other subjects' types.
    pub references: Vec<Reference>,
}

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionEntry {
    /// The schema id.
    pub id: i32,
    /// Soft-deleted.
    pub deleted: bool,
}

/// A version as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The subject.
    pub subject: String,
    /// The version.
    pub version: i32,
    /// The schema.
    pub stored: Arc<Stored>,
    /// Soft-deleted.
    pub deleted: bool,
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    /// The highest (non-deleted unless asked) version.
    Latest,
    /// A version number.
    Number(i32),
}

impl VersionSpec {
    /// Parse a path segment: `latest`, `-1` (latest) or 1..2^31-1.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        if raw.eq_ignore_ascii_case("latest") || raw == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match raw.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionSpec::Number(n)),
            _ => Err(ApiError::invalid_version(raw)),
        }
    }
}

type ContentKey = (String, Option<String>, Vec<Reference>);

/// The folded `_schemas` log.
#[derive(Debug, Default)]
pub struct Store {
    subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    schemas: HashMap<i32, Arc<Stored>>,
    ids_by_content: HashMap<ContentKey, i32>,
    uses: HashMap<i32, usize>,
    max_id: i32,
    global_level: Option<Level>,
    subject_levels: HashMap<String, Level>,
    global_mode: Option<Mode>,
    subject_modes: HashMap<String, Mode>,
}

impl Store {
    /// Fold one record of the log. A record this registry cannot read is reported and changes nothing:
    /// the log is shared with other writers, and one bad record must not stop every instance.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let key: Key = serde_json::from_slice(key).map_err(|e| format!("unreadable key: {e}"))?;
        let parse_err = |e: serde_json::Error| format!("unreadable value for {key:?}: {e}");
        match &key {
            Key::Schema {
                subject, version, ..
            } => match value {
                None => self.remove_version(subject, *version),
                Some(v) => {
                    let value: SchemaValue = serde_json::from_slice(v).map_err(parse_err)?;
                    self.put_version(value);
                }
            },
            Key::Config { subject, .. } => {
                let level = match value {
                    None => None,
                    Some(v) => {
                        serde_json::from_slice::<ConfigValue>(v)
                            .map_err(parse_err)?
                            .compatibility_level
                    }
                };
                match (subject, level) {
                    (None, level) => self.global_level = level,
                    (Some(s), Some(level)) => {
                        self.subject_levels.insert(s.clone(), level);
                    }
                    (Some(s), None) => {
                        self.subject_levels.remove(s);
                    }
                }
            }
            Key::Mode { subject, .. } => {
                let mode = match value {
                    None => None,
                    Some(v) => {
                        serde_json::from_slice::<ModeValue>(v)
                            .map_err(parse_err)?
                            .mode
                    }
                };
                match (subject, mode) {
                    (None, mode) => self.global_mode = mode,
                    (Some(s), Some(mode)) => {
                        self.subject_modes.insert(s.clone(), mode);
                    }
                    (Some(s), None) => {
                        self.subject_modes.remove(s);
                    }
                }
            }
            Key::DeleteSubject { subject, .. } => {
                if let Some(v) = value {
                    let SubjectValue { version, .. } =
                        serde_json::from_slice(v).map_err(parse_err)?;
                    if let Some(versions) = self.subjects.get_mut(subject) {
                        for (_, entry) in versions.range_mut(..=version) {
                            entry.deleted = true;
                        }
                    }
                }
            }
            Key::ClearSubject { subject, .. } => {
                if let Some(v) = value {
                    let SubjectValue { version, .. } =
                        serde_json::from_slice(v).map_err(parse_err)?;
                    let cleared: Vec<i32> = self
                        .subjects
                        .get(subject)
                        .map(|versions| {
                            versions
                                .range(..=version)
                                .filter(|(_, e)| e.deleted)
                                .map(|(v, _)| *v)
                                .collect()
                        })
                        .unwrap_or_default();
                    for v in cleared {
                        self.remove_version(subject, v);
                    }
                }
            }
            Key::Noop { .. } => {}
        }
        Ok(())
    }

    fn put_version(&mut self, value: SchemaValue) {
        let SchemaValue {
            subject,
            version,
            id,
            schema,
            schema_type,
            references,
            deleted,
        } = value;
        self.max_id = self.max_id.max(id);
        let schema_type = schema_type.filter(|t| !t.eq_ignore_ascii_case("AVRO"));
        self.schemas.entry(id).or_insert_with(|| {
            Arc::new(Stored {
                id,
                schema: schema.clone(),
                schema_type: schema_type.clone(),
                references: references.clone(),
            })
        });
        self.ids_by_content
            .entry((schema, schema_type, references))
            .or_insert(id);
        let previous = self
            .subjects
            .entry(subject)
            .or_default()
            .insert(version, VersionEntry { id, deleted });
        match previous {
            Some(old) if old.id == id => {}
            Some(old) => {
                self.release(old.id);
                *self.uses.entry(id).or_default() += 1;
            }
            None => *self.uses.entry(id).or_default() += 1,
        }
    }

    fn remove_version(&mut self, subject: &str, version: i32) {
        let Some(versions) = self.subjects.get_mut(subject) else {
            return;
        };
        let removed = versions.remove(&version);
        if versions.is_empty() {
            self.subjects.remove(subject);
        }
        if let Some(entry) = removed {
            self.release(entry.id);
        }
    }

    /// One fewer version uses `id`; with none left the schema is gone (its id is never given again).
    fn release(&mut self, id: i32) {
        let left = self.uses.get_mut(&id).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            self.uses.remove(&id);
            if let Some(stored) = self.schemas.remove(&id) {
                let key = (
                    stored.schema.clone(),
                    stored.schema_type.clone(),
                    stored.references.clone(),
                );
                if self.ids_by_content.get(&key) == Some(&id) {
                    self.ids_by_content.remove(&key);
                }
            }
        }
    }

    // --- queries -------------------------------------------------------------------------------

    /// Subjects with a live version (or any version when `deleted`), optionally by prefix.
    pub fn subjects(&self, deleted: bool, prefix: Option<&str>) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(s, _)| prefix.is_none_or(|p| s.starts_with(p)))
            .filter(|(_, versions)| deleted || versions.values().any(|e| !e.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    fn subject(
        &self,
        subject: &str,
        deleted: bool,
    ) -> Result<&BTreeMap<i32, VersionEntry>, ApiError> {
        self.subjects
            .get(subject)
            .filter(|versions| deleted || versions.values().any(|e| !e.deleted))
            .ok_or_else(|| ApiError::subject_not_found(subject))
    }

    /// Whether the subject has any version at all, deleted or not.
    pub fn subject_exists(&self, subject: &str) -> bool {
        self.subjects.contains_key(subject)
    }

    /// A subject's version numbers.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<i32>, ApiError> {
        Ok(self
            .subject(subject, deleted)?
            .iter()
            .filter(|(_, e)| deleted || !e.deleted)
            .map(|(v, _)| *v)
            .collect())
    }

    /// One version of a subject.
    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<Found, ApiError> {
        let versions = self.subject(subject, deleted)?;
        let hit = match spec {
            VersionSpec::Latest => versions.iter().rev().find(|(_, e)| deleted || !e.deleted),
            VersionSpec::Number(n) => versions
                .get_key_value(&n)
                .filter(|(_, e)| deleted || !e.deleted),
        };
        let (version, entry) = hit.ok_or_else(|| {
            let shown = match spec {
                VersionSpec::Latest => "latest".to_string(),
                VersionSpec::Number(n) => n.to_string(),
            };
            ApiError::version_not_found(subject, &shown)
        })?;
        let stored = self.schemas.get(&entry.id).cloned().ok_or_else(|| {
            ApiError::store(&format!(
                "schema id {} of {subject} v{version} is missing",
                entry.id
            ))
        })?;
        Ok(Found {
            subject: subject.to_string(),
            version: *version,
            stored,
            deleted: entry.deleted,
        })
    }

    /// Every version of a subject (oldest first), live ones only unless `deleted`.
    pub fn all_versions(&self, subject: &str, deleted: bool) -> Vec<Found> {
        self.subjects
            .get(subject)
            .map(|versions| {
                versions
                    .iter()
                    .filter(|(_, e)| deleted || !e.deleted)
                    .filter_map(|(v, e)| {
                        Some(Found {
                            subject: subject.to_string(),
                            version: *v,
                            stored: self.schemas.get(&e.id)?.clone(),
                            deleted: e.deleted,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A schema by id.
    pub fn schema(&self, id: i32) -> Option<Arc<Stored>> {
        self.schemas.get(&id).cloned()
    }

    /// The `(subject, version)` pairs that use schema `id`.
    pub fn uses_of(&self, id: i32, deleted: bool) -> Vec<(String, i32)> {
        self.subjects
            .iter()
            .flat_map(|(s, versions)| {
                versions
                    .iter()
                    .filter(move |(_, e)| e.id == id && (deleted || !e.deleted))
                    .map(move |(v, _)| (s.clone(), *v))
            })
            .collect()
    }

    /// The version of `subject` holding this exact schema, if any.
    pub fn find_in_subject(
        &self,
        subject: &str,
        schema: &str,
        schema_type: Option<&str>,
        references: &[Reference],
        deleted: bool,
    ) -> Option<(i32, i32)> {
        let id = self.id_of(schema, schema_type, references)?;
        self.subjects
            .get(subject)?
            .iter()
            .rev()
            .find_map(|(v, e)| (e.id == id && (deleted || !e.deleted)).then_some((*v, id)))
    }

    /// The id this exact schema already has, under any subject.
    pub fn id_of(
        &self,
        schema: &str,
        schema_type: Option<&str>,
        references: &[Reference],
    ) -> Option<i32> {
        let key = (
            schema.to_string(),
            schema_type.map(str::to_string),
            references.to_vec(),
        );
        self.ids_by_content.get(&key).copied()
    }

    /// The id a new schema gets: one more than any id ever seen in the log.
    pub fn next_id(&self) -> i32 {
        self.max_id + 1
    }

    /// The version a new registration under `subject` gets: one more than any version it ever had.
    pub fn next_version(&self, subject: &str) -> i32 {
        self.subjects
            .get(subject)
            .and_then(|v| v.keys().next_back().copied())
            .unwrap_or(0)
            + 1
    }

    /// The ids of the live schemas that reference `subject` at `version`, ascending.
    pub fn referenced_by(&self, subject: &str, version: i32) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .schemas
            .values()
            .filter(|s| {
                s.references
                    .iter()
                    .any(|r| r.subject == subject && r.version == version)
                    && !self.uses_of(s.id, false).is_empty()
            })
            .map(|s| s.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether another live schema references `subject` at `version`.
    pub fn is_referenced(&self, subject: &str, version: i32) -> bool {
        !self.referenced_by(subject, version).is_empty()
    }

    /// The global compatibility level, if one was set.
    pub fn global_level(&self) -> Option<Level> {
        self.global_level
    }

    /// A subject's own compatibility level, if one was set.
    pub fn subject_level(&self, subject: &str) -> Option<Level> {
        self.subject_levels.get(subject).copied()
    }

    /// The global mode, if one was set.
    pub fn global_mode(&self) -> Option<Mode> {
        self.global_mode
    }

    /// A subject's own mode, if one was set.
    pub fn subject_mode(&self, subject: &str) -> Option<Mode> {
        self.subject_modes.get(subject).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &mut Store, subject: &str, version: i32, id: i32, schema: &str, deleted: bool) {
        let key = format!(
            r#"{{"keytype":"SCHEMA","subject":"{subject}","version":{version},"magic":1}}"#
        );
        let value = serde_json::to_vec(&SchemaValue {
            subject: subject.into(),
            version,
            id,
            schema: schema.into(),
            schema_type: None,
            references: vec![],
            deleted,
        })
        .unwrap_or_default();
        assert_eq!(store.apply(key.as_bytes(), Some(&value)), Ok(()));
    }

    fn tombstone(store: &mut Store, subject: &str, version: i32) {
        let key = format!(
            r#"{{"keytype":"SCHEMA","subject":"{subject}","version":{version},"magic":1}}"#
        );
        assert_eq!(store.apply(key.as_bytes(), None), Ok(()));
    }

    #[test]
    fn versions_ids_and_soft_deletes() {
        let mut s = Store::default();
        put(&mut s, "a", 1, 1, "\"string\"", false);
        put(&mut s, "a", 2, 2, "\"int\"", false);
        put(&mut s, "b", 1, 1, "\"string\"", false);
        assert_eq!(s.subjects(false, None), vec!["a", "b"]);
        assert_eq!(s.versions("a", false), Ok(vec![1, 2]));
        assert_eq!(
            s.version("a", VersionSpec::Latest, false)
                .map(|f| f.stored.id),
            Ok(2)
        );
        assert_eq!(s.uses_of(1, false), vec![("a".into(), 1), ("b".into(), 1)]);
        assert_eq!(s.id_of("\"string\"", None, &[]), Some(1));
        assert_eq!(s.next_id(), 3);

        put(&mut s, "a", 2, 2, "\"int\"", true);
        assert_eq!(s.versions("a", false), Ok(vec![1]));
        assert_eq!(s.versions("a", true), Ok(vec![1, 2]));
        assert_eq!(
            s.version("a", VersionSpec::Latest, false)
                .map(|f| f.version),
            Ok(1)
        );
        assert_eq!(s.next_version("a"), 3, "versions are never reused");
        assert!(
            s.schema(2).is_some(),
            "a soft-deleted version keeps its schema"
        );

        tombstone(&mut s, "a", 2);
        assert!(
            s.schema(2).is_none(),
            "hard delete of the last use removes the schema"
        );
        assert_eq!(s.next_id(), 3, "ids are never reused");
        tombstone(&mut s, "a", 1);
        assert_eq!(s.subjects(true, None), vec!["b"]);
        assert!(s.schema(1).is_some(), "still used by b");
        assert_eq!(s.versions("a", true), Err(ApiError::subject_not_found("a")));
    }

    #[test]
    fn config_mode_and_confluent_subject_markers() {
        let mut s = Store::default();
        assert_eq!(
            s.apply(
                br#"{"keytype":"CONFIG","subject":null,"magic":0}"#,
                Some(br#"{"compatibilityLevel":"FULL"}"#)
            ),
            Ok(())
        );
        assert_eq!(s.global_level(), Some(Level::Full));
        assert_eq!(
            s.apply(
                br#"{"keytype":"MODE","subject":"x","magic":0}"#,
                Some(br#"{"mode":"READONLY"}"#)
            ),
            Ok(())
        );
        assert_eq!(s.subject_mode("x"), Some(Mode::Readonly));
        put(&mut s, "x", 1, 1, "\"string\"", false);
        put(&mut s, "x", 2, 2, "\"int\"", false);
        assert_eq!(
            s.apply(
                br#"{"keytype":"DELETE_SUBJECT","subject":"x","magic":0}"#,
                Some(br#"{"subject":"x","version":2}"#)
            ),
            Ok(())
        );
        assert!(s.subjects(false, None).is_empty());
        assert_eq!(
            s.apply(
                br#"{"keytype":"CLEAR_SUBJECT","subject":"x","magic":0}"#,
                Some(br#"{"subject":"x","version":2}"#)
            ),
            Ok(())
        );
        assert!(s.subjects(true, None).is_empty());
        assert_eq!(s.apply(br#"{"keytype":"NOOP","magic":0}"#, None), Ok(()));
    }

    #[test]
    fn unreadable_records_are_reported_not_applied() {
        let mut s = Store::default();
        assert!(s.apply(b"not json", None).is_err());
        assert!(
            s.apply(br#"{"keytype":"WHATEVER","magic":0}"#, None)
                .is_err()
        );
        assert!(
            s.apply(
                br#"{"keytype":"SCHEMA","subject":"a","version":1,"magic":1}"#,
                Some(b"{}")
            )
            .is_err()
        );
        assert!(s.subjects(true, None).is_empty());
    }

    #[test]
    fn version_specs() {
        assert_eq!(VersionSpec::parse("latest"), Ok(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("-1"), Ok(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("3"), Ok(VersionSpec::Number(3)));
        assert!(VersionSpec::parse("0").is_err());
        assert!(VersionSpec::parse("x").is_err());
    }
}
