//! Hosting an aggregate type: its topics, the states of the partitions a process owns, and what a
//! command does to them. Pure apart from the clock handed in; the processor (crates/kafka) does every
//! read and write, and a domain (domains/*) only says which aggregates it has ([`crate::domain`]).
//!
//! A command is all or nothing: [`Hosted::decide`] builds everything the command leads to (its events,
//! its result and the changelog record after it) without changing the held state; the processor encodes
//! those and calls [`Hosted::commit`] only once every record is built, or [`Hosted::discard`] when one
//! cannot be (the command is then dead-lettered and the state is as if it never came). A panic in the
//! domain's `handle` or `apply` is caught here and makes the command poison.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use apache_avro::types::Value;
use causeway_core::tracked::{Decision, DedupWindow, Next, Outcome, Seen, Tracked};
use serde::Serialize;

use crate::aggregate::AggregateContract;
use crate::records::{CommandOutcome, CommandResult, EventMetadata, RecentCommand, StateRecord};
use crate::wire::Writer;

/// The rejection code of a command result written for a dead-lettered command.
pub const DEAD_LETTERED: &str = "dead_lettered";

/// The topics of one hosted type: the topic it consumes, and the event store and changelog it writes
/// when it has them. An aggregate has all three (`<context>.<aggregate>.{commands,events,changelog}`);
/// a saga consumes its inbox and keeps a changelog; a saga's router only consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// What it consumes: an aggregate's commands, a saga's inbox, a router's source.
    pub input: String,
    /// Its event store.
    pub events: Option<String>,
    /// Its latest states, compacted.
    pub changelog: Option<String>,
}

impl Topics {
    /// The topics of `aggregate` in `context`.
    pub fn of(context: &str, aggregate: &str) -> Self {
        Self {
            input: format!("{context}.{aggregate}.commands"),
            events: Some(format!("{context}.{aggregate}.events")),
            changelog: Some(format!("{context}.{aggregate}.changelog")),
        }
    }

    /// The topics the input, events and changelog of one type all share a partition count with.
    pub fn co_partitioned(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.input.as_str())
            .chain(self.events.as_deref())
            .chain(self.changelog.as_deref())
    }
}

/// Size limits on what a command brings in, so that no result, event or state record built from it can
/// outgrow a topic's message size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of a command id, an aggregate id (the record key) or a correlation id.
    pub max_id_bytes: usize,
    /// Most bytes of a rejection reason; longer ones are cut (at a character boundary).
    pub max_reason_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_bytes: 256,
            max_reason_bytes: 1024,
        }
    }
}

/// The ids of a command that could be read, for the result of a dead-lettered one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandRef {
    /// The command id.
    pub command_id: String,
    /// The aggregate id (or the record key when the command could not be read).
    pub aggregate_id: String,
    /// The correlation id (the command id when there is none).
    pub correlation_id: String,
}

impl CommandRef {
    /// The result of this command when it is dead-lettered for `reason`.
    pub fn dead_lettered(
        &self,
        aggregate_type: &str,
        reason: &str,
        limits: Limits,
        now_ms: i64,
    ) -> CommandResult {
        CommandResult {
            command_id: self.command_id.clone(),
            correlation_id: self.correlation_id.clone(),
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: self.aggregate_id.clone(),
            outcome: CommandOutcome::Rejected,
            new_version: None,
            rejection_code: Some(DEAD_LETTERED.to_string()),
            reason: Some(cut(reason, limits.max_reason_bytes).to_string()),
            processed_at: now_ms,
        }
    }
}

/// Why a command record is poison, and its ids when they could be read (then it gets a result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// Why, for the dead letter's reason header and the result.
    pub reason: String,
    /// The command's ids, when its command id could be read and is within the limits.
    pub command: Option<CommandRef>,
}

/// What one command leads to, built but not yet kept.
#[derive(Debug)]
pub struct Decided {
    /// The aggregate id: the key of every event and of the state record.
    pub aggregate_id: String,
    /// The events, stamped with their metadata: record full name and value, in order.
    pub events: Vec<OutRecord>,
    /// The command's result (`None`: the input was not a command).
    pub result: Option<CommandResult>,
    /// Records for other topics (a saga's commands, a router's forwarded inputs), each to its key's
    /// murmur2 home partition.
    pub sends: Vec<Outgoing>,
    /// Whether it was a resend answered from the state (nothing else is written).
    pub duplicate: bool,
    /// The changelog record after the command; `None` when the state does not change or is not kept
    /// (a duplicate; a rejection for an aggregate that does not exist).
    pub state: Option<Value>,
}

/// A record a host built, written straight to the wire format once its writer is known (no
/// [`Value`] tree on the way).
pub struct OutRecord {
    /// Its full name.
    pub full_name: &'static str,
    body: Box<dyn RecordBody>,
}

impl std::fmt::Debug for OutRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutRecord")
            .field("full_name", &self.full_name)
            .finish_non_exhaustive()
    }
}

/// What an [`OutRecord`] holds: a contract type.
trait RecordBody: Send {
    fn write(&self, writer: &Writer, out: &mut Vec<u8>) -> Result<(), crate::wire::WireError>;
    fn value(&self) -> Result<Value, String>;
}

impl<T: Serialize + Send> RecordBody for T {
    fn write(&self, writer: &Writer, out: &mut Vec<u8>) -> Result<(), crate::wire::WireError> {
        writer.write(self, out)
    }

    fn value(&self) -> Result<Value, String> {
        apache_avro::to_value(self).map_err(|e| e.to_string())
    }
}

impl OutRecord {
    /// Record `full_name` holding `value` (a contract type).
    pub fn new<T: Serialize + Send + 'static>(full_name: &'static str, value: T) -> Self {
        Self {
            full_name,
            body: Box::new(value),
        }
    }

    /// Append it to `out` in the wire format, with `writer` (its schema on the topic it goes to).
    pub fn write(&self, writer: &Writer, out: &mut Vec<u8>) -> Result<(), crate::wire::WireError> {
        self.body.write(writer, out)
    }

    /// It as an Avro value (for tests and readers; the processor writes it with [`OutRecord::write`]).
    pub fn value(&self) -> Result<Value, String> {
        self.body.value()
    }
}

/// A record for another topic.
#[derive(Debug)]
pub struct Outgoing {
    /// The topic (one of [`Hosted::targets`]).
    pub topic: String,
    /// The record key: it decides the partition.
    pub key: String,
    /// The value.
    pub body: Body,
}

/// The value of an [`Outgoing`] record.
#[derive(Debug)]
pub enum Body {
    /// A record to encode (record full name and value); its encoding is handed back with
    /// [`Hosted::encoded`].
    Record {
        /// Its full name.
        full_name: &'static str,
        /// Its value.
        value: Value,
    },
    /// Bytes already in the wire format (a record sent again).
    Encoded(Vec<u8>),
    /// The input record's own value, unchanged (a router forwarding it).
    Input,
}

/// The clock the processor hands a command.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// The command record's timestamp, ms.
    pub command_at_ms: i64,
    /// Now, ms (`occurred_at`, `processed_at`).
    pub now_ms: i64,
}

impl Stamp {
    /// The idempotency window's clock for this command: its record's timestamp, but never later than
    /// now, so that a producer's clock (or a hostile timestamp) far in the future cannot push every
    /// remembered command out of the window.
    pub fn window_clock(&self) -> i64 {
        self.command_at_ms.min(self.now_ms)
    }
}

/// A hosted aggregate type, object-safe so one process can host several.
pub trait Hosted: Send {
    /// Its type name, as in topic names.
    fn aggregate_type(&self) -> &'static str;
    /// Its topics.
    fn topics(&self) -> &Topics;
    /// Full name of its changelog record.
    fn state_record(&self) -> &'static str;
    /// Decide the command in record `full_name`/`value` with record key `key` on `partition`, and build
    /// what it leads to. The held state is unchanged until [`Hosted::commit`]. With `with_state`, the
    /// changelog record after the command is built too ([`Decided::state`]), so that a state that cannot
    /// be written is this command's fault; without, the changed state is written once per batch
    /// ([`Hosted::take_dirty`]), and a state that cannot be written fails the batch, which the processor
    /// then retries command by command, with states.
    fn decide(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        full_name: &str,
        value: &Value,
        stamp: Stamp,
        with_state: bool,
    ) -> Result<Decided, Poison>;
    /// Keep what the last [`Hosted::decide`] decided.
    fn commit(&mut self);
    /// Whether states changed (committed) since the last [`Hosted::take_dirty`] wait to be written.
    fn has_dirty(&self) -> bool;
    /// The states changed (committed) since the last call and not written with their command, as
    /// changelog records written by `writer` (the state record's, on the changelog), and forget that
    /// they changed. `Err` names the aggregate whose state cannot be written.
    fn take_dirty(
        &mut self,
        now_ms: i64,
        writer: &Writer,
        out: &mut Vec<Dirty>,
    ) -> Result<(), String>;
    /// Forget what the last [`Hosted::decide`] decided.
    fn discard(&mut self);
    /// Load one changelog record (a `None` value is a tombstone).
    fn restore(&mut self, partition: i32, key: &str, value: Option<&Value>) -> Result<(), String>;
    /// Forget the states of `partition`.
    fn drop_partition(&mut self, partition: i32);
    /// Number of states held in memory.
    fn states(&self) -> usize;
    /// Whether its states may live in the processor's on-disk store and be read back when a command
    /// needs one (an aggregate). A host whose states must all be in memory (a saga, for its deadlines)
    /// says no and is restored from its whole changelog.
    fn stores_states(&self) -> bool {
        false
    }
    /// Whether the state of `key` on `partition` is in memory (an aggregate not yet created is not:
    /// the store is asked, and answers none).
    fn holds(&self, _partition: i32, _key: &str) -> bool {
        true
    }
    /// Drop the least recently used states beyond `max`, only when every state held is written (after
    /// a store write); how many were dropped. They are read back with [`Hosted::restore`].
    fn evict_to(&mut self, _max: usize) -> usize {
        0
    }
    /// Whether its inputs are commands that get a result: a poison input whose command id can be read
    /// gets a `dead_lettered` result. A saga's inbox (results, events) and a router's sources are not
    /// commands: a result written for them would be a reply nobody gave.
    fn answers_commands(&self) -> bool {
        true
    }
    /// The changelog record the last [`Hosted::decide`] (or [`Hosted::decide_due`]) would write once
    /// kept, with its [`Hosted::encoded`] sends in it, for a host that writes states once per batch:
    /// the processor builds it per input when a batch's states could not be written (strict mode), so
    /// that the input that made a state unwritable is the one dead-lettered.
    fn state_after(&self, _now_ms: i64) -> Option<Result<Value, String>> {
        None
    }
    /// Whether every input record must be on its key's murmur2 home partition (one owner per key); a
    /// record found elsewhere is forwarded there. A router reads topics keyed otherwise.
    fn home_keyed(&self) -> bool {
        true
    }
    /// Where a partition of its input with no committed offset starts: at its end (a router: a saga
    /// reacts to what happens after it is first deployed, not to the whole history) instead of its
    /// beginning.
    fn starts_at_end(&self) -> bool {
        false
    }
    /// The topics [`Decided::sends`] go to, checked at start.
    fn targets(&self) -> Vec<String> {
        Vec::new()
    }
    /// The encoding of the `index`-th [`Body::Record`] (counting only those) of the last
    /// [`Hosted::decide`]'s sends, before [`Hosted::commit`] (a saga keeps it to send again).
    fn encoded(&mut self, _index: usize, _payload: &[u8]) {}
    /// The states (partition and key) with something due at `now_ms` (a deadline, a retry) on the
    /// partitions `ready` accepts, earliest first, at most `max`.
    fn due(&self, _now_ms: i64, _max: usize, _ready: &dyn Fn(i32) -> bool) -> Vec<(i32, String)> {
        Vec::new()
    }
    /// What is due for `key` on `partition` could not be done (its records cannot be built): not
    /// offered again until the state changes or is restored.
    fn defer_due(&mut self, _partition: i32, _key: &str) {}
    /// Decide what is due for `key` on `partition` at `stamp.now_ms`, like [`Hosted::decide`] (the
    /// result is kept with [`Hosted::commit`]).
    fn decide_due(&mut self, partition: i32, key: &str, _stamp: Stamp) -> Result<Decided, String> {
        Err(format!("nothing is due for {key} on partition {partition}"))
    }
    /// The open transaction committed: what was kept since the last call is durable (metrics).
    fn durable(&mut self) {}
    /// `partition` finished restoring: what [`Hosted::restore`] read of it is whole (metrics).
    fn restored(&mut self, _partition: i32) {}
    /// The open transaction aborted: what was kept in it is not (its states are restored).
    fn aborted(&mut self) {
        self.discard();
    }
}

/// A changed state to write to the changelog.
#[derive(Debug)]
pub struct Dirty {
    /// The partition it belongs to.
    pub partition: i32,
    /// The aggregate id (the key).
    pub aggregate_id: String,
    /// The changelog record, in the wire format.
    pub bytes: Vec<u8>,
}

/// A state held in memory, with when it was last used.
struct Cached<A> {
    tracked: Tracked<A>,
    used: std::cell::Cell<u64>,
    /// Its remembered commands as its changelog record carries them.
    encoded: EncodedRecent,
}

impl<A> Cached<A> {
    fn new(tracked: Tracked<A>, now: u64) -> Self {
        Self {
            tracked,
            used: std::cell::Cell::new(now),
            encoded: EncodedRecent::default(),
        }
    }
}

/// The oldest of an aggregate's remembered commands, each encoded once (a `causeway.RecentCommand` in
/// Avro binary) when its state is first written after it joined the window, so that every later state
/// record copies one run of bytes instead of serializing the whole window again (docs/adr/0016-hot-path.md).
/// Always a prefix of [`Tracked::recent`]: commands leave from the front of both, join at the back.
#[derive(Default)]
struct EncodedRecent {
    bytes: Vec<u8>,
    /// Where the first command still in the window starts in `bytes`.
    start: usize,
    /// Each command's length, oldest first.
    lens: std::collections::VecDeque<usize>,
}

impl EncodedRecent {
    /// The `n` oldest commands leave the window.
    fn evict(&mut self, n: usize) {
        for len in self.lens.drain(..n.min(self.lens.len())) {
            self.start += len;
        }
        if self.lens.is_empty() {
            self.bytes.clear();
            self.start = 0;
        } else if self.start > self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
    }

    /// Encode the commands of `recent` not encoded yet, with `items` (the changelog schema's
    /// `RecentCommand`).
    fn catch_up(
        &mut self,
        recent: &std::collections::VecDeque<Seen>,
        writer: &Writer,
        items: &apache_avro::Schema,
    ) -> Result<(), crate::wire::WireError> {
        for seen in recent.iter().skip(self.lens.len()) {
            let before = self.bytes.len();
            writer.write_part(items, &RecentView::from(seen), &mut self.bytes)?;
            self.lens.push_back(self.bytes.len() - before);
        }
        Ok(())
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

/// Where a changelog schema's fields are: a record of exactly the five fields of [`StateRecord`] in any
/// order, `recent_commands` an array. A schema shaped otherwise is written through serde as a whole.
struct Envelope {
    fields: &'static [apache_avro::schema::RecordField],
    items: &'static apache_avro::Schema,
}

impl Envelope {
    fn of(writer: &Writer) -> Option<Self> {
        let fields = writer.fields()?;
        let names = [
            "aggregate_id",
            "version",
            "state",
            "recent_commands",
            "updated_at",
        ];
        if fields.len() != names.len() || !names.iter().all(|n| fields.iter().any(|f| f.name == *n))
        {
            return None;
        }
        let items = fields.iter().find_map(|f| match &f.schema {
            apache_avro::Schema::Array(array) if f.name == "recent_commands" => Some(&*array.items),
            _ => None,
        })?;
        Some(Self { fields, items })
    }

    /// The changelog record of `aggregate_id` in the wire format, appended to `out`: each field in the
    /// schema's order, the remembered commands copied from `cached.encoded` (the new ones encoded
    /// first). Byte for byte what serde writes of a [`StateRecord`].
    fn write<A: AggregateContract>(
        &self,
        writer: &Writer,
        aggregate_id: &str,
        cached: &mut Cached<A>,
        now_ms: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), crate::wire::WireError> {
        cached
            .encoded
            .catch_up(&cached.tracked.recent, writer, self.items)?;
        let start = out.len();
        writer.header(out);
        for field in self.fields {
            let written = match field.name.as_str() {
                "aggregate_id" => writer.write_part(&field.schema, &aggregate_id, out),
                "version" => writer.write_part(&field.schema, &cached.tracked.version, out),
                "state" => writer.write_part(&field.schema, &cached.tracked.aggregate, out),
                "updated_at" => writer.write_part(&field.schema, &now_ms, out),
                // `recent_commands` (`Envelope::of` admits no other name): an array in one block, its
                // count (an Avro long), its items, then the empty block that ends it.
                _ => {
                    let count = i64::try_from(cached.encoded.lens.len()).unwrap_or(i64::MAX);
                    let counted = if count > 0 {
                        writer
                            .write_part(&apache_avro::Schema::Long, &count, out)
                            .map(|()| out.extend_from_slice(cached.encoded.as_bytes()))
                    } else {
                        Ok(())
                    };
                    counted.map(|()| out.push(0))
                }
            };
            if let Err(e) = written {
                out.truncate(start);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A decided command waiting for commit.
struct Pending<A: AggregateContract> {
    partition: i32,
    aggregate_id: String,
    next: Next<A>,
    /// Its state record was built with it (else it is written with the batch's).
    written: bool,
}

/// The [`Hosted`] implementation for aggregate `A`.
pub struct Host<A: AggregateContract> {
    topics: Topics,
    window: DedupWindow,
    limits: Limits,
    partitions: HashMap<i32, HashMap<String, Cached<A>>>,
    /// Counts uses of states, so that the least recently used can be dropped ([`Hosted::evict_to`]).
    clock: std::cell::Cell<u64>,
    pending: Option<Pending<A>>,
    /// Aggregates whose committed state is still to be written this batch.
    dirty: std::collections::HashSet<(i32, String)>,
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
    /// Host `A` in `context` with dedup window `window` and size limits `limits`.
    pub fn new(context: &str, window: DedupWindow, limits: Limits) -> Self {
        Self {
            topics: Topics::of(context, A::TYPE),
            window,
            limits,
            partitions: HashMap::new(),
            clock: std::cell::Cell::new(0),
            pending: None,
            dirty: std::collections::HashSet::new(),
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// The string field `name` of a record value, for a command that cannot be read as its type.
pub(crate) fn string_field<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    let Value::Record(fields) = value else {
        return None;
    };
    fields
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| match v {
            Value::String(s) => Some(s.as_str()),
            Value::Union(_, inner) => match inner.as_ref() {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            },
            _ => None,
        })
}

/// The changelog record, borrowed from the state (`StateRecord` without the copies).
#[derive(Serialize)]
struct StateView<'a, S, R: Serialize = Vec<RecentView<'a>>> {
    aggregate_id: &'a str,
    version: i64,
    state: &'a S,
    recent_commands: R,
    updated_at: i64,
}

/// The remembered commands, serialized one by one from the state (no list built).
struct RecentSeq<'a>(&'a std::collections::VecDeque<Seen>);

impl Serialize for RecentSeq<'_> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        serializer.collect_seq(self.0.iter().map(RecentView::from))
    }
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

/// The ids of a command record that cannot be read as a command of its aggregate (another type, a
/// value that does not fit), when its `command_id` field can be read and is within `limits`; the
/// aggregate id is the record key.
pub fn readable_ids(key: Option<&[u8]>, value: &Value, limits: Limits) -> Option<CommandRef> {
    let command_id = string_field(value, "command_id")?;
    if command_id.is_empty() || command_id.len() > limits.max_id_bytes {
        return None;
    }
    let aggregate_id = key
        .map(|k| cut(&String::from_utf8_lossy(k), limits.max_id_bytes).to_string())
        .unwrap_or_default();
    let correlation_id = string_field(value, "correlation_id")
        .filter(|c| !c.is_empty() && c.len() <= limits.max_id_bytes)
        .unwrap_or(command_id);
    Some(CommandRef {
        command_id: command_id.to_string(),
        aggregate_id,
        correlation_id: correlation_id.to_string(),
    })
}

impl<A: AggregateContract> Host<A> {
    fn decide_inner(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        full_name: &str,
        value: &Value,
        stamp: Stamp,
        with_state: bool,
    ) -> Result<Decided, Poison> {
        let limits = self.limits;
        let command = A::command(full_name, value).map_err(|e| Poison {
            reason: e.to_string(),
            command: readable_ids(key, value, self.limits),
        })?;
        let meta = A::meta(&command);
        let poison = |reason: String, readable: bool| Poison {
            reason,
            command: readable.then(|| CommandRef {
                command_id: meta.command_id.to_string(),
                aggregate_id: cut(meta.aggregate_id, limits.max_id_bytes).to_string(),
                correlation_id: meta
                    .correlation_id
                    .filter(|c| c.len() <= limits.max_id_bytes)
                    .unwrap_or(meta.command_id)
                    .to_string(),
            }),
        };
        if meta.command_id.is_empty() {
            return Err(poison(
                format!("{full_name} has an empty command_id"),
                false,
            ));
        }
        if meta.command_id.len() > limits.max_id_bytes {
            return Err(poison(
                format!(
                    "command_id is {} bytes; at most {} are allowed",
                    meta.command_id.len(),
                    limits.max_id_bytes
                ),
                false,
            ));
        }
        for (field, id) in [
            ("aggregate id", Some(meta.aggregate_id)),
            ("correlation_id", meta.correlation_id),
        ] {
            if let Some(id) = id
                && id.len() > limits.max_id_bytes
            {
                return Err(poison(
                    format!(
                        "{field} is {} bytes; at most {} are allowed",
                        id.len(),
                        limits.max_id_bytes
                    ),
                    true,
                ));
            }
        }
        if meta.aggregate_id.is_empty() {
            return Err(poison(
                format!("{full_name} has an empty aggregate id"),
                true,
            ));
        }
        match key {
            Some(k) if k == meta.aggregate_id.as_bytes() => {}
            Some(k) => {
                return Err(poison(
                    format!(
                        "the record key {:?} is not the command's aggregate id {:?} (commands are \
                         keyed by aggregate id, so that one partition owns each aggregate)",
                        cut(&String::from_utf8_lossy(k), limits.max_id_bytes),
                        meta.aggregate_id
                    ),
                    true,
                ));
            }
            None => {
                return Err(poison(
                    format!(
                        "the record has no key; commands are keyed by aggregate id ({:?})",
                        meta.aggregate_id
                    ),
                    true,
                ));
            }
        }

        let empty = Tracked::default();
        let existing = self
            .partitions
            .get(&partition)
            .and_then(|states| states.get(meta.aggregate_id))
            .map(|cached| {
                cached.used.set(self.tick());
                &cached.tracked
            });
        let tracked = existing.unwrap_or(&empty);
        let at = stamp.window_clock();
        // The domain's code runs here; a panic in it is the command's fault, not the process's.
        let decided = catch_unwind(AssertUnwindSafe(|| {
            let decision = tracked.decide(meta.command_id, meta.expected_version, &command);
            let decision = match decision {
                Decision::Reject(mut r) => {
                    r.reason = cut(&r.reason, limits.max_reason_bytes).to_string();
                    Decision::Reject(r)
                }
                other => other,
            };
            let next = tracked.prepare(meta.command_id, at, &decision, self.window);
            (decision, next)
        }));
        let (decision, next) = decided.map_err(|panic| {
            poison(
                format!(
                    "the {} handler panicked on {full_name}: {}",
                    A::TYPE,
                    panic_message(panic.as_ref())
                ),
                true,
            )
        })?;

        let mut result = CommandResult {
            command_id: meta.command_id.to_string(),
            correlation_id: meta.correlation_id.unwrap_or(meta.command_id).to_string(),
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
        match outcome {
            Outcome::Accepted { version } => {
                result.outcome = CommandOutcome::Accepted;
                result.new_version = Some(version);
            }
            Outcome::Rejected { code, reason } => {
                result.outcome = CommandOutcome::Rejected;
                result.rejection_code = Some(code);
                result.reason = Some(reason);
            }
        }

        let first_version = tracked.version + 1;
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
            let record = A::event_record(event, metadata)
                .map_err(|why| poison(format!("cannot write an event: {why}"), true))?;
            records.push(record);
        }

        // A rejection for an aggregate that does not exist leaves no state behind.
        let next = next.filter(|n| existing.is_some() || n.aggregate.is_some());
        let state =
            match &next {
                Some(next) if with_state => {
                    let view = StateView {
                        aggregate_id: meta.aggregate_id,
                        version: next.version,
                        state: next.aggregate.as_ref().unwrap_or(&tracked.aggregate),
                        recent_commands: tracked
                            .recent_after(next)
                            .map(RecentView::from)
                            .collect::<Vec<_>>(),
                        updated_at: stamp.now_ms,
                    };
                    Some(apache_avro::to_value(&view).map_err(|e| {
                        poison(format!("cannot write {}: {e}", A::STATE_RECORD), true)
                    })?)
                }
                _ => None,
            };
        let aggregate_id = result.aggregate_id.clone();
        if let Some(next) = next {
            self.pending = Some(Pending {
                partition,
                aggregate_id: aggregate_id.clone(),
                next,
                written: with_state,
            });
        }
        Ok(Decided {
            aggregate_id,
            events: records,
            result: Some(result),
            sends: Vec::new(),
            duplicate,
            state,
        })
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

    fn decide(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        full_name: &str,
        value: &Value,
        stamp: Stamp,
        with_state: bool,
    ) -> Result<Decided, Poison> {
        self.pending = None;
        // The domain's conversions (reading the command, writing events and state) run here too; a
        // panic in them is the command's fault. `pending` is set last, after everything that can fail.
        let limits = self.limits;
        catch_unwind(AssertUnwindSafe(|| {
            self.decide_inner(partition, key, full_name, value, stamp, with_state)
        }))
        .unwrap_or_else(|panic| {
            self.pending = None;
            Err(Poison {
                reason: format!(
                    "the {} contract panicked on {full_name}: {}",
                    A::TYPE,
                    panic_message(panic.as_ref())
                ),
                command: readable_ids(key, value, limits),
            })
        })
    }

    fn commit(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if !pending.written {
            self.dirty
                .insert((pending.partition, pending.aggregate_id.clone()));
        }
        let now = self.tick();
        let cached = self
            .partitions
            .entry(pending.partition)
            .or_default()
            .entry(pending.aggregate_id)
            .or_insert_with(|| Cached::new(Tracked::default(), now));
        cached.used.set(now);
        cached.encoded.evict(pending.next.evicted);
        cached.tracked.commit(pending.next);
    }

    fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    fn take_dirty(
        &mut self,
        now_ms: i64,
        writer: &Writer,
        out: &mut Vec<Dirty>,
    ) -> Result<(), String> {
        let envelope = Envelope::of(writer);
        for (partition, aggregate_id) in self.dirty.drain() {
            let Some(cached) = self
                .partitions
                .get_mut(&partition)
                .and_then(|states| states.get_mut(&aggregate_id))
            else {
                continue;
            };
            let mut bytes = Vec::with_capacity(256 + cached.encoded.as_bytes().len());
            let written = match &envelope {
                Some(envelope) => envelope.write(writer, &aggregate_id, cached, now_ms, &mut bytes),
                None => {
                    let tracked = &cached.tracked;
                    let view = StateView {
                        aggregate_id: &aggregate_id,
                        version: tracked.version,
                        state: &tracked.aggregate,
                        recent_commands: RecentSeq(&tracked.recent),
                        updated_at: now_ms,
                    };
                    writer.write(&view, &mut bytes)
                }
            };
            written
                .map_err(|e| format!("cannot write {} of {aggregate_id}: {e}", A::STATE_RECORD))?;
            out.push(Dirty {
                partition,
                aggregate_id,
                bytes,
            });
        }
        Ok(())
    }

    fn discard(&mut self) {
        self.pending = None;
    }

    fn restore(&mut self, partition: i32, key: &str, value: Option<&Value>) -> Result<(), String> {
        let now = self.tick();
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
        states.insert(key.to_string(), Cached::new(tracked, now));
        Ok(())
    }

    fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.dirty.retain(|(p, _)| *p != partition);
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.partition == partition)
        {
            self.pending = None;
        }
    }

    fn states(&self) -> usize {
        self.partitions.values().map(HashMap::len).sum()
    }

    fn stores_states(&self) -> bool {
        true
    }

    fn holds(&self, partition: i32, key: &str) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|states| states.contains_key(key))
    }

    fn evict_to(&mut self, max: usize) -> usize {
        let held = self.states();
        if held <= max || !self.dirty.is_empty() {
            return 0;
        }
        // Down to nine tenths of `max`, so that the next eviction is that many loads away: the sort
        // below is paid once per `max / 10` states read back.
        let keep = max - max / 10;
        let mut ages: Vec<u64> = self
            .partitions
            .values()
            .flat_map(|states| states.values().map(|c| c.used.get()))
            .collect();
        let drop = held - keep;
        let (_, cutoff, _) = ages.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        let mut dropped = 0;
        for states in self.partitions.values_mut() {
            states.retain(|key, cached| {
                let pending = self
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.aggregate_id == *key);
                let old = cached.used.get() <= cutoff && dropped < drop;
                if old && !pending {
                    dropped += 1;
                    false
                } else {
                    true
                }
            });
        }
        dropped
    }
}

impl<A: AggregateContract> Host<A> {
    /// The next use's tick.
    fn tick(&self) -> u64 {
        let now = self.clock.get() + 1;
        self.clock.set(now);
        now
    }
}
