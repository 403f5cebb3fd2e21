//! The projection contract: one aggregate type's events in, changes to one read model out. A pure
//! mapping with no I/O, so a user writes it without touching Kafka, Redis or ClickHouse, tests it with
//! given/when/then (crates/testkit), and the projectors apply it to their store.
//!
//! A read model is a set of documents, one per aggregate (keyed by its id), each holding named fields
//! and the version of the aggregate it reflects. For each event the projection says which fields to set
//! and which counters to add to, and which index entries to file (e.g. the orders of a customer, newest
//! first). A projector applies the change only when the event's version is newer than the document's,
//! in one atomic step with the version: a redelivered or replayed event changes nothing. Events of one
//! aggregate arrive in version order (one partition), so an `add` is applied exactly once too.

use std::fmt;

/// What a projection is told of an event besides its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventInfo<'a> {
    /// The aggregate it belongs to (the document's key).
    pub aggregate_id: &'a str,
    /// The aggregate's version after it: 1, 2, 3, ...
    pub version: i64,
    /// When it was recorded, milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
}

/// The value of a field of a read-model document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
    /// A JSON document (e.g. the lines of an order), as its text.
    Json(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) | Value::Json(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
        }
    }
}

/// An entry of a secondary index: the document filed under `key` of index `index`, ordered by `score`
/// (listed highest first). A document is filed once per key of an index: filing it again under the
/// same key moves it to the new score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The index, e.g. `orders-by-customer`.
    pub index: &'static str,
    /// The key within it, e.g. a customer id.
    pub key: String,
    /// The order within the key, e.g. the time the order was placed.
    pub score: i64,
}

/// What one event changes in the document of its aggregate. Empty: nothing (the event does not
/// concern this read model); the document's version still moves on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Fields to set.
    pub set: Vec<(&'static str, Value)>,
    /// Counters to add to (a missing counter counts from 0).
    pub add: Vec<(&'static str, i64)>,
    /// Index entries to file the document under.
    pub index: Vec<IndexEntry>,
}

impl Change {
    /// No change.
    pub fn none() -> Self {
        Self::default()
    }

    /// With field `name` set to `value`.
    pub fn set(mut self, name: &'static str, value: Value) -> Self {
        self.set.push((name, value));
        self
    }

    /// With field `name` set to the text `value`.
    pub fn text(self, name: &'static str, value: impl Into<String>) -> Self {
        self.set(name, Value::Text(value.into()))
    }

    /// With field `name` set to the number `value`.
    pub fn int(self, name: &'static str, value: i64) -> Self {
        self.set(name, Value::Int(value))
    }

    /// With `delta` added to counter `name`.
    pub fn add(mut self, name: &'static str, delta: i64) -> Self {
        self.add.push((name, delta));
        self
    }

    /// Filed under `key` of index `index` at `score`.
    pub fn index(mut self, index: &'static str, key: impl Into<String>, score: i64) -> Self {
        self.index.push(IndexEntry {
            index,
            key: key.into(),
            score,
        });
        self
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.index.is_empty()
    }
}

/// A read model fed by the events of one aggregate type.
pub trait Projection: Default + Send + Sync + 'static {
    /// The aggregate whose events it reads.
    type Aggregate: crate::Aggregate;

    /// Its name: the read model's name in keys, tables, metrics and the CLI (e.g. `order-by-id`).
    const NAME: &'static str;

    /// The fields its documents have, for readers: every field a [`Change`] may set or add to.
    const FIELDS: &'static [&'static str];

    /// What `event` changes in its aggregate's document. A panic or an `Err` is a poison event: it is
    /// dead-lettered with the message, and the stream goes on.
    fn project(
        &self,
        event: &<Self::Aggregate as crate::Aggregate>::Event,
        info: &EventInfo<'_>,
    ) -> Result<Change, String>;
}

/// A document as a store keeps it, in memory: the reference of what applying changes means, which
/// the stores' own implementations (a Redis script, ClickHouse rows) follow and tests compare with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// The version of the aggregate it reflects (0: none yet).
    pub version: i64,
    /// The time of the last event applied, ms since the Unix epoch.
    pub event_time_ms: i64,
    /// Its fields, as text (numbers in decimal).
    pub fields: std::collections::BTreeMap<&'static str, String>,
    /// The index entries it is filed under.
    pub index: Vec<IndexEntry>,
}

impl Document {
    /// Apply the change of the event with `info`, if that event is newer than the document. Whether it
    /// was applied.
    pub fn apply(&mut self, info: &EventInfo<'_>, change: &Change) -> bool {
        if info.version <= self.version {
            return false;
        }
        for (name, value) in &change.set {
            self.fields.insert(name, value.to_string());
        }
        for (name, delta) in &change.add {
            let now = self
                .fields
                .get(name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            self.fields
                .insert(name, now.saturating_add(*delta).to_string());
        }
        // One entry per (index, key): filing again moves it to the new score.
        for entry in &change.index {
            match self
                .index
                .iter_mut()
                .find(|e| e.index == entry.index && e.key == entry.key)
            {
                Some(e) => e.score = entry.score,
                None => self.index.push(entry.clone()),
            }
        }
        self.version = info.version;
        self.event_time_ms = info.occurred_at_ms;
        true
    }

    /// Field `name`, if set.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: i64) -> EventInfo<'static> {
        EventInfo {
            aggregate_id: "a",
            version,
            occurred_at_ms: version * 10,
        }
    }

    #[test]
    fn a_change_applies_once_and_only_when_newer() {
        let mut d = Document::default();
        let c = Change::none()
            .text("status", "PLACED")
            .add("n", 2)
            .index("by", "k", 5);
        assert!(d.apply(&info(1), &c));
        assert!(
            !d.apply(&info(1), &c),
            "the same event again changes nothing"
        );
        assert_eq!(d.field("n"), Some("2"));
        assert!(d.apply(&info(2), &Change::none().add("n", -5)));
        assert!(!d.apply(&info(1), &c), "an older event changes nothing");
        assert_eq!(d.field("n"), Some("-3"));
        assert_eq!(d.field("status"), Some("PLACED"));
        assert_eq!((d.version, d.event_time_ms, d.index.len()), (2, 20, 1));
    }

    #[test]
    fn counters_saturate_instead_of_overflowing() {
        let mut d = Document::default();
        d.apply(&info(1), &Change::none().add("n", i64::MAX));
        d.apply(&info(2), &Change::none().add("n", 1));
        assert_eq!(d.field("n"), Some(i64::MAX.to_string().as_str()));
    }
}
