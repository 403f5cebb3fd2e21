//! One hosted aggregate type: its topics, the states of the partitions this process owns, and what a
//! command does to them. Pure apart from the clock and id values handed in; the processor loop does
//! every read and write.

use std::collections::HashMap;

use apache_avro::types::Value;
use causeway_contracts::aggregate::AggregateContract;
use causeway_contracts::records::{
    CommandOutcome, CommandResult, EventMetadata, RecentCommand, StateRecord,
};
use causeway_core::tracked::{Decision, DedupWindow, Outcome, Seen, Tracked};
use serde::Serialize;

/// The topics of one aggregate type: `<context>.<aggregate>.{commands,events,changelog}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Its commands, consumed.
    pub commands: String,
    /// Its event store.
    pub events: String,
    /// Its latest states, compacted.
    pub changelog: String,
}

impl Topics {
    /// The topics of `aggregate` in `context`.
    pub fn of(context: &str, aggregate: &str) -> Self {
        Self {
            commands: format!("{context}.{aggregate}.commands"),
            events: format!("{context}.{aggregate}.events"),
            changelog: format!("{context}.{aggregate}.changelog"),
        }
    }
}

/// What one command produced: its events (record name and value, in order) and its result.
#[derive(Debug)]
pub struct Processed {
    /// The aggregate id: the key of every event.
    pub aggregate_id: String,
    /// The events, stamped with their metadata.
    pub events: Vec<(&'static str, Value)>,
    /// The command's result.
    pub result: CommandResult,
    /// Whether it was a resend answered from the state.
    pub duplicate: bool,
}

/// A changed state to write to the changelog.
#[derive(Debug)]
pub struct Dirty {
    /// The partition it belongs to.
    pub partition: i32,
    /// The aggregate id (the key).
    pub aggregate_id: String,
    /// The changelog record value.
    pub value: Value,
}

/// The clock and ids the processor hands a command.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// The command record's timestamp, ms (the dedup window's clock).
    pub command_at_ms: i64,
    /// Now, ms (`occurred_at`, `processed_at`).
    pub now_ms: i64,
}

/// A hosted aggregate type, object-safe so one process can host several.
pub trait Hosted: Send {
    /// Its type name, as in topic names.
    fn aggregate_type(&self) -> &'static str;
    /// Its topics.
    fn topics(&self) -> &Topics;
    /// Full name of its changelog record.
    fn state_record(&self) -> &'static str;
    /// Process the command in record `full_name`/`value` with record key `key` on `partition`.
    /// `Err` is why the record is poison (it goes to the DLQ; the state is unchanged).
    fn process(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        full_name: &str,
        value: &Value,
        stamp: Stamp,
    ) -> Result<Processed, String>;
    /// Load one changelog record (a `None` value is a tombstone).
    fn restore(&mut self, partition: i32, key: &str, value: Option<&Value>) -> Result<(), String>;
    /// Forget the states of `partition`.
    fn drop_partition(&mut self, partition: i32);
    /// Number of states held.
    fn states(&self) -> usize;
    /// The states changed since the last call, as changelog values, and forget that they changed.
    fn take_dirty(&mut self, now_ms: i64, out: &mut Vec<Dirty>) -> Result<(), String>;
}

struct Slot<A> {
    tracked: Tracked<A>,
    dirty: bool,
}

/// The [`Hosted`] implementation for aggregate `A`.
pub struct Host<A: AggregateContract> {
    topics: Topics,
    window: DedupWindow,
    partitions: HashMap<i32, HashMap<String, Slot<A>>>,
    dirty: Vec<(i32, String)>,
}

impl<A: AggregateContract> std::fmt::Debug for Host<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("aggregate", &A::TYPE)
            .field("states", &self.states())
            .finish_non_exhaustive()
    }
}

impl<A: AggregateContract> Host<A> {
    /// Host `A` in `context` with dedup window `window`.
    pub fn new(context: &str, window: DedupWindow) -> Self {
        Self {
            topics: Topics::of(context, A::TYPE),
            window,
            partitions: HashMap::new(),
            dirty: Vec::new(),
        }
    }
}

fn result_of(outcome: &Outcome) -> (CommandOutcome, Option<i64>, Option<String>, Option<String>) {
    match outcome {
        Outcome::Accepted { version } => (CommandOutcome::Accepted, Some(*version), None, None),
        Outcome::Rejected { code, reason } => (
            CommandOutcome::Rejected,
            None,
            Some(code.clone()),
            Some(reason.clone()),
        ),
    }
}

/// The changelog record, borrowed from the state (`StateRecord` without the copies).
#[derive(Serialize)]
struct StateView<'a, S> {
    aggregate_id: &'a str,
    version: i64,
    state: &'a S,
    recent_commands: Vec<RecentView<'a>>,
    updated_at: i64,
}

#[derive(Serialize)]
struct RecentView<'a> {
    command_id: &'a str,
    processed_at: i64,
    new_version: Option<i64>,
    rejection_code: Option<&'a str>,
    reason: Option<&'a str>,
}

impl<'a> From<&'a Seen> for RecentView<'a> {
    fn from(seen: &'a Seen) -> Self {
        let (new_version, rejection_code, reason) = match &seen.outcome {
            Outcome::Accepted { version } => (Some(*version), None, None),
            Outcome::Rejected { code, reason } => {
                (None, Some(code.as_str()), Some(reason.as_str()))
            }
        };
        Self {
            command_id: &seen.command_id,
            processed_at: seen.at_ms,
            new_version,
            rejection_code,
            reason,
        }
    }
}

fn seen_of(recent: RecentCommand) -> Seen {
    let outcome = match recent.new_version {
        Some(version) => Outcome::Accepted { version },
        None => Outcome::Rejected {
            code: recent.rejection_code.unwrap_or_default(),
            reason: recent.reason.unwrap_or_default(),
        },
    };
    Seen {
        command_id: recent.command_id,
        at_ms: recent.processed_at,
        outcome,
    }
}

impl<A: AggregateContract> Hosted for Host<A> {
    fn aggregate_type(&self) -> &'static str {
        A::TYPE
    }

    fn topics(&self) -> &Topics {
        &self.topics
    }

    fn state_record(&self) -> &'static str {
        A::STATE_RECORD
    }

    fn process(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        full_name: &str,
        value: &Value,
        stamp: Stamp,
    ) -> Result<Processed, String> {
        let command = A::command(full_name, value).map_err(|e| e.to_string())?;
        let meta = A::meta(&command);
        if meta.command_id.is_empty() {
            return Err(format!("{full_name} has an empty command_id"));
        }
        if meta.aggregate_id.is_empty() {
            return Err(format!("{full_name} has an empty aggregate id"));
        }
        match key {
            Some(k) if k == meta.aggregate_id.as_bytes() => {}
            Some(k) => {
                return Err(format!(
                    "the record key {:?} is not the command's aggregate id {:?} (commands are keyed \
                     by aggregate id, so that one partition owns each aggregate)",
                    String::from_utf8_lossy(k),
                    meta.aggregate_id
                ));
            }
            None => {
                return Err(format!(
                    "the record has no key; commands are keyed by aggregate id ({:?})",
                    meta.aggregate_id
                ));
            }
        }
        let states = self.partitions.entry(partition).or_default();
        if !states.contains_key(meta.aggregate_id) {
            states.insert(
                meta.aggregate_id.to_string(),
                Slot {
                    tracked: Tracked::default(),
                    dirty: false,
                },
            );
        }
        let Some(slot) = states.get_mut(meta.aggregate_id) else {
            return Err("unreachable: the state was just inserted".into());
        };
        let decision = slot
            .tracked
            .decide(meta.command_id, meta.expected_version, &command);
        slot.tracked
            .record(meta.command_id, stamp.command_at_ms, &decision, self.window);
        let correlation_id = meta.correlation_id.unwrap_or(meta.command_id).to_string();
        let mut result = CommandResult {
            command_id: meta.command_id.to_string(),
            correlation_id,
            aggregate_type: A::TYPE.to_string(),
            aggregate_id: meta.aggregate_id.to_string(),
            processed_at: stamp.now_ms,
            ..CommandResult::default()
        };
        let (outcome, events, duplicate) = match decision {
            Decision::Duplicate(outcome) => (outcome, Vec::new(), true),
            Decision::Accept { events, version } => (Outcome::Accepted { version }, events, false),
            Decision::Reject(r) => (
                Outcome::Rejected {
                    code: r.code.to_string(),
                    reason: r.reason,
                },
                Vec::new(),
                false,
            ),
        };
        (
            result.outcome,
            result.new_version,
            result.rejection_code,
            result.reason,
        ) = result_of(&outcome);
        if !duplicate && !slot.dirty {
            slot.dirty = true;
            self.dirty.push((partition, result.aggregate_id.clone()));
        }
        let first_version = slot.tracked.version - i64::try_from(events.len()).unwrap_or(0) + 1;
        let mut records = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let metadata = EventMetadata {
                event_id: uuid::Uuid::now_v7().to_string(),
                aggregate_id: result.aggregate_id.clone(),
                aggregate_version: first_version + i64::try_from(i).unwrap_or(0),
                causation_id: result.command_id.clone(),
                correlation_id: result.correlation_id.clone(),
                occurred_at: stamp.now_ms,
                schema_version: 1,
            };
            records.push(A::event_record(event, metadata)?);
        }
        Ok(Processed {
            aggregate_id: result.aggregate_id.clone(),
            events: records,
            result,
            duplicate,
        })
    }

    fn restore(&mut self, partition: i32, key: &str, value: Option<&Value>) -> Result<(), String> {
        let states = self.partitions.entry(partition).or_default();
        let Some(value) = value else {
            states.remove(key);
            return Ok(());
        };
        let record: StateRecord<A> = apache_avro::from_value(value)
            .map_err(|e| format!("{} does not fit its type: {e}", A::STATE_RECORD))?;
        let tracked = Tracked {
            aggregate: record.state,
            version: record.version,
            recent: record.recent_commands.into_iter().map(seen_of).collect(),
        };
        states.insert(
            key.to_string(),
            Slot {
                tracked,
                dirty: false,
            },
        );
        Ok(())
    }

    fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.dirty.retain(|(p, _)| *p != partition);
    }

    fn states(&self) -> usize {
        self.partitions.values().map(HashMap::len).sum()
    }

    fn take_dirty(&mut self, now_ms: i64, out: &mut Vec<Dirty>) -> Result<(), String> {
        for (partition, aggregate_id) in self.dirty.drain(..) {
            let Some(slot) = self
                .partitions
                .get_mut(&partition)
                .and_then(|states| states.get_mut(&aggregate_id))
            else {
                continue;
            };
            slot.dirty = false;
            let view = StateView {
                aggregate_id: &aggregate_id,
                version: slot.tracked.version,
                state: &slot.tracked.aggregate,
                recent_commands: slot.tracked.recent.iter().map(RecentView::from).collect(),
                updated_at: now_ms,
            };
            let value = apache_avro::to_value(&view)
                .map_err(|e| format!("cannot write {}: {e}", A::STATE_RECORD))?;
            out.push(Dirty {
                partition,
                aggregate_id,
                value,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use causeway_orders::contracts::OrderLine;
    use causeway_orders::contracts::order::PlaceOrder;
    use causeway_orders::order::{Order, OrderStatus};

    use super::*;

    fn place(command_id: &str, order_id: &str) -> Value {
        apache_avro::to_value(PlaceOrder {
            command_id: command_id.into(),
            order_id: order_id.into(),
            lines: vec![OrderLine {
                sku: "s".into(),
                quantity: 1,
                unit_price_cents: 10,
            }],
            currency: "EUR".into(),
            ..PlaceOrder::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const PLACE: &str = "causeway.orders.order.PlaceOrder";
    const AT: Stamp = Stamp {
        command_at_ms: 1_000,
        now_ms: 2_000,
    };

    fn host() -> Host<Order> {
        Host::new("orders", DedupWindow::default())
    }

    #[test]
    fn a_command_gives_stamped_events_a_result_and_one_dirty_state() {
        let mut h = host();
        let p = h
            .process(3, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].0, "causeway.orders.order.OrderPlaced");
        assert_eq!(
            (p.result.outcome, p.result.new_version),
            (CommandOutcome::Accepted, Some(1))
        );
        assert!(!p.duplicate);
        let again = h
            .process(3, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(again.duplicate && again.events.is_empty());
        assert_eq!(again.result.new_version, Some(1));

        let mut dirty = Vec::new();
        h.take_dirty(5, &mut dirty)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dirty.len(), 1, "one state per aggregate per batch");
        assert_eq!(
            (dirty[0].partition, dirty[0].aggregate_id.as_str()),
            (3, "o-1")
        );
        dirty.clear();
        h.take_dirty(6, &mut dirty)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(dirty.is_empty(), "nothing changed since");
    }

    #[test]
    fn a_written_state_restores_to_the_same_decisions() {
        let mut h = host();
        h.process(0, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut dirty = Vec::new();
        h.take_dirty(5, &mut dirty)
            .unwrap_or_else(|e| panic!("{e}"));
        let record: StateRecord<Order> =
            apache_avro::from_value(&dirty[0].value).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (record.version, record.state.status),
            (1, OrderStatus::Placed)
        );

        let mut restored = host();
        restored
            .restore(0, "o-1", Some(&dirty[0].value))
            .unwrap_or_else(|e| panic!("{e}"));
        let resent = restored
            .process(0, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(resent.duplicate, "the command id survived the restore");
        let other = restored
            .process(0, Some(b"o-1"), PLACE, &place("c-2", "o-1"), AT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            other.result.rejection_code.as_deref(),
            Some("already_placed"),
            "the state survived the restore"
        );
        restored
            .restore(0, "o-1", None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(restored.states(), 0, "a tombstone removes the state");
    }

    #[test]
    fn poison_is_named_and_changes_nothing() {
        let mut h = host();
        let unknown = h.process(
            0,
            Some(b"o-1"),
            "causeway.orders.order.Refund",
            &place("c", "o-1"),
            AT,
        );
        assert!(unknown.is_err_and(|e| e.contains("is not a command")));
        let wrong_key = h.process(0, Some(b"o-2"), PLACE, &place("c", "o-1"), AT);
        assert!(wrong_key.is_err_and(|e| e.contains("is not the command's aggregate id")));
        let no_key = h.process(0, None, PLACE, &place("c", "o-1"), AT);
        assert!(no_key.is_err_and(|e| e.contains("no key")));
        let no_id = h.process(0, Some(b"o-1"), PLACE, &place("", "o-1"), AT);
        assert!(no_id.is_err_and(|e| e.contains("empty command_id")));
        assert_eq!(h.states(), 0);
        let mut dirty = Vec::new();
        h.take_dirty(1, &mut dirty)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(dirty.is_empty());
    }

    #[test]
    fn dropping_a_partition_forgets_its_states_only() {
        let mut h = host();
        h.process(0, Some(b"a"), PLACE, &place("c-1", "a"), AT)
            .unwrap_or_else(|e| panic!("{e}"));
        h.process(1, Some(b"b"), PLACE, &place("c-2", "b"), AT)
            .unwrap_or_else(|e| panic!("{e}"));
        h.drop_partition(0);
        assert_eq!(h.states(), 1);
        let mut dirty = Vec::new();
        h.take_dirty(1, &mut dirty)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dirty.len(), 1);
        assert_eq!(dirty[0].aggregate_id, "b");
    }
}
