//! A projection hosted by a projector: an event record (full name and Avro value, as decoded from the
//! wire) in, the [`Change`] to its aggregate's document out, with the event's id, version and time. A
//! record that is not an event of the aggregate, an event without readable metadata, a projection's
//! `Err` and a panic in its code are all poison: [`Projecting::project`] says why, and the projector
//! dead-letters the record.

use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use apache_avro::types::Value;
use causeway_core::projection::{Change, EventInfo, Projection};

use crate::aggregate::AggregateContract;
use crate::hosting::panic_message;
use crate::records::EventMetadata;

/// An event, projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projected {
    /// The aggregate (the document's key).
    pub aggregate_id: String,
    /// The aggregate's version after the event.
    pub version: i64,
    /// When the event was recorded, ms since the Unix epoch.
    pub occurred_at_ms: i64,
    /// What it changes.
    pub change: Change,
}

/// A hosted projection, whatever its aggregate type.
pub trait Projecting: Send + Sync {
    /// The projection's name.
    fn name(&self) -> &'static str;
    /// The aggregate type whose events it reads (`<context>.<aggregate>.events`).
    fn aggregate_type(&self) -> &'static str;
    /// The fields of its documents.
    fn fields(&self) -> &'static [&'static str];
    /// Project the event record `full_name` with `value`; `Err` says why it is poison.
    fn project(&self, full_name: &str, value: &Value) -> Result<Projected, String>;
}

/// Projection `P` as a [`Projecting`].
pub struct Projector<P: Projection>(P, PhantomData<fn() -> P>);

impl<P: Projection> std::fmt::Debug for Projector<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Projector").field(&P::NAME).finish()
    }
}

impl<P: Projection> Default for Projector<P> {
    fn default() -> Self {
        Self(P::default(), PhantomData)
    }
}

impl<P> Projecting for Projector<P>
where
    P: Projection,
    P::Aggregate: AggregateContract,
{
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn aggregate_type(&self) -> &'static str {
        <P::Aggregate as causeway_core::Aggregate>::TYPE
    }

    fn fields(&self) -> &'static [&'static str] {
        P::FIELDS
    }

    fn project(&self, full_name: &str, value: &Value) -> Result<Projected, String> {
        let metadata = metadata_of(value)
            .ok_or_else(|| format!("{full_name}: no readable `metadata` field"))?;
        if metadata.aggregate_id.is_empty() || metadata.aggregate_version < 1 {
            return Err(format!(
                "{full_name}: metadata names aggregate {:?} at version {}; an event has an id and a version from 1",
                metadata.aggregate_id, metadata.aggregate_version
            ));
        }
        // The domain's code runs here; a panic in it is the event's fault, not the process's.
        catch_unwind(AssertUnwindSafe(|| {
            let event = P::Aggregate::event(full_name, value).map_err(|e| e.to_string())?;
            let info = EventInfo {
                aggregate_id: &metadata.aggregate_id,
                version: metadata.aggregate_version,
                occurred_at_ms: metadata.occurred_at,
            };
            self.0.project(&event, &info)
        }))
        .map_err(|panic| {
            format!(
                "projection {} panicked on {full_name}: {}",
                P::NAME,
                panic_message(panic.as_ref())
            )
        })?
        .map_err(|why| format!("projection {} refused {full_name}: {why}", P::NAME))
        .and_then(|change| {
            let names = change.set.iter().map(|(n, _)| *n);
            match names.chain(change.add.iter().map(|(n, _)| *n)).find(|n| n.starts_with('_') || n.is_empty()) {
                // `_version` and `_event_time` are the document's own.
                Some(n) => Err(format!(
                    "projection {} changes field {n:?} on {full_name}: names starting with '_' are reserved",
                    P::NAME
                )),
                None => Ok(change),
            }
        })
        .map(|change| Projected {
            aggregate_id: metadata.aggregate_id,
            version: metadata.aggregate_version,
            occurred_at_ms: metadata.occurred_at,
            change,
        })
    }
}

/// The `metadata` field of an event record, if it reads as [`EventMetadata`].
pub fn metadata_of(value: &Value) -> Option<EventMetadata> {
    let Value::Record(fields) = value else {
        return None;
    };
    let (_, metadata) = fields.iter().find(|(name, _)| name == "metadata")?;
    apache_avro::from_value::<EventMetadata>(metadata).ok()
}
