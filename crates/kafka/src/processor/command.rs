//! One command record inside the open transaction. A record off its key's murmur2 home partition is
//! forwarded there and not decided here (one aggregate, one partition, whoever produced it). Otherwise
//! the command is decided and every record it leads to (events, result, state) is encoded and checked
//! against the topics' size limit before any of it is sent or kept: all or nothing. What cannot be
//! built is poison: a dead letter, and a `dead_lettered` result when the command id can be read.

use causeway_contracts::hosting::{Body, CommandRef, Decided, Poison, Stamp, readable_ids};
use causeway_contracts::records::{CommandOutcome, CommandResult};
use causeway_contracts::wire::WireError;
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::error::BatchError;
use super::{FORWARDED, Run, now_ms};
use crate::headers;
use crate::partitioner::home_partition;

/// The full name of the command result record.
const RESULT_RECORD: &str = "causeway.CommandResult";

/// Room kept for a record's headers (trace context) and framing beside its key and value.
const RECORD_OVERHEAD: usize = 1024;

/// The header a forwarded command carries: the partition it was found on. A record that carries it and
/// is still off its home partition was forwarded by a processor that counts the topic's partitions
/// differently (the topic grew): it is dead-lettered rather than sent round again.
pub const FORWARDED_FROM: &str = "causeway.forwarded-from";

/// A command's records, encoded: nothing is sent until all of them are.
struct Encoded {
    events: Vec<Vec<u8>>,
    result: Option<Vec<u8>>,
    state: Option<Vec<u8>>,
    /// Records for other topics: topic, key, the value (`None`: the input record's own), and whether
    /// it was a record to encode ([`Body::Record`]).
    sends: Vec<(String, String, Option<Vec<u8>>, bool)>,
}

/// The [`Run::writer`] cache's slot for the results topic (hosts use their index).
const RESULTS: usize = usize::MAX;

/// Most due states fired in one transaction.
const MAX_DUE_PER_BATCH: usize = 500;

/// Why a decided command's records could not be built.
enum Unbuildable {
    /// The registry failed: the batch is retried.
    Transient(WireError),
    /// They never will be: the command is dead-lettered.
    Poison(String),
}

impl Run {
    /// Produce everything the batch's commands lead to, inside the open transaction.
    pub(super) fn fill(&mut self, batch: &[BorrowedMessage<'_>]) -> Result<(), BatchError> {
        let now = now_ms();
        self.batch_states.clear();
        for m in batch {
            let Some((host, partition)) = self.owned(m.topic(), m.partition()) else {
                continue;
            };
            if let Some(key) = m.key()
                && self.hosts[host].home_keyed()
            {
                let home = home_partition(key, self.layout.partitions[host]);
                if home != partition {
                    self.off_home(host, partition, m, home, now)?;
                    continue;
                }
            }
            self.command(host, partition, m, now)?;
        }
        self.fire_due(now)?;
        // Each changed state once, after the whole batch: the changelog keeps the latest per key.
        self.dirty_states(now)?;
        // Kept until the transaction commits: the local store gets them then.
        let states = std::mem::take(&mut self.batch_states);
        for ((host, partition, aggregate_id), bytes) in &states {
            let Some(changelog) = &self.hosts[*host].topics().changelog else {
                continue;
            };
            self.send(
                BaseRecord::to(changelog)
                    .partition(*partition)
                    .key(aggregate_id.as_bytes())
                    .payload(bytes.as_slice()),
            )?;
        }
        self.batch_states = states;
        Ok(())
    }

    /// A command found off its key's home partition: forwarded there, unless it was forwarded before
    /// or is too large to send again (then it is poison).
    fn off_home(
        &mut self,
        host: usize,
        partition: i32,
        m: &BorrowedMessage<'_>,
        home: i32,
        now: i64,
    ) -> Result<(), BatchError> {
        let headers = m.headers().and_then(headers::readable).unwrap_or_default();
        let forwarded_before = headers.iter().any(|h| h.key == FORWARDED_FROM);
        let size = m.payload_len()
            + m.key_len()
            + headers
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum::<usize>()
            + RECORD_OVERHEAD;
        let limit = self.record_limits.of(m.topic());
        let reason = if forwarded_before {
            format!(
                "forwarded once already and still off its home partition {home}: the processors \
                 disagree on the partition count of {} (restart them after a topic grows)",
                m.topic()
            )
        } else if size > limit {
            format!(
                "off its home partition {home}, and at {size} bytes too large to forward ({} takes \
                 at most {limit})",
                m.topic()
            )
        } else {
            self.forward(host, m, home, partition)?;
            return Ok(());
        };
        let command = if self.hosts[host].answers_commands() {
            self.ids_of(m)?
        } else {
            None
        };
        self.poisoned(host, partition, m, Poison { reason, command }, now)
    }

    /// The ids of `m` when its value decodes and its command id can be read.
    fn ids_of(&self, m: &BorrowedMessage<'_>) -> Result<Option<CommandRef>, BatchError> {
        let Some(bytes) = m.payload() else {
            return Ok(None);
        };
        match self.block_on(self.codec.decode_value(bytes, &self.upcasters)) {
            Ok(decoded) => Ok(readable_ids(m.key(), &decoded.value, self.limits)),
            Err(e @ WireError::Registry(_)) => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// Encode the states the batch's commands changed and did not write themselves, into
    /// `batch_states`. A state that cannot be written fails the batch and turns strict mode on: the
    /// retry builds each command's state with it, so that the command that made it unwritable is
    /// dead-lettered alone.
    fn dirty_states(&mut self, now: i64) -> Result<(), BatchError> {
        let mut dirty = Vec::new();
        let unwritable = |why: String| {
            BatchError::Retry(format!(
                "a state cannot be written ({why}); retrying the batch command by command"
            ))
        };
        for host in 0..self.hosts.len() {
            // The writer is asked for only when there is something to write: a changelog subject the
            // registry lacks fails the commands that change state, not every batch.
            if !self.hosts[host].has_dirty() {
                continue;
            }
            let Some(changelog) = self.hosts[host].topics().changelog.clone() else {
                continue;
            };
            let changelog = changelog.as_str();
            let writer = match self.state_writers.get(&host) {
                Some(w) => std::sync::Arc::clone(w),
                None => {
                    let state_record = self.hosts[host].state_record();
                    match self.block_on(self.codec.writer(changelog, state_record)) {
                        Ok(w) => {
                            self.state_writers.insert(host, std::sync::Arc::clone(&w));
                            w
                        }
                        Err(e @ WireError::Registry(_)) => return Err(e.into()),
                        Err(e) => {
                            self.strict = true;
                            return Err(unwritable(e.to_string()));
                        }
                    }
                }
            };
            dirty.clear();
            if let Err(why) = self.hosts[host].take_dirty(now, &writer, &mut dirty) {
                self.strict = true;
                return Err(unwritable(why));
            }
            let limit = self.record_limits.of(changelog);
            for state in dirty.drain(..) {
                let size = state.bytes.len() + state.aggregate_id.len() + RECORD_OVERHEAD;
                if size > limit {
                    self.strict = true;
                    return Err(unwritable(format!(
                        "the state of {} would be {size} bytes; {changelog} takes at most {limit}",
                        state.aggregate_id
                    )));
                }
                self.batch_states
                    .insert((host, state.partition, state.aggregate_id), state.bytes);
            }
        }
        Ok(())
    }

    /// Send `m` unchanged (key, value, headers, timestamp) to partition `home` of its topic, marked as
    /// forwarded from `from`.
    fn forward(
        &mut self,
        host: usize,
        m: &BorrowedMessage<'_>,
        home: i32,
        from: i32,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(m.topic()).partition(home);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(p) = m.payload() {
            record = record.payload(p);
        }
        if let Some(ms) = m.timestamp().to_millis() {
            record = record.timestamp(ms);
        }
        let from = from.to_string();
        let marker = Header {
            key: FORWARDED_FROM,
            value: Some(from.as_bytes()),
        };
        // Headers whose names cannot be read are left behind (the trace with them).
        let headers = match m.headers().and_then(headers::owned) {
            Some(h) => h.insert(marker),
            None => OwnedHeaders::new().insert(marker),
        };
        record = record.headers(headers);
        tracing::debug!(
            topic = m.topic(),
            from = m.partition(),
            to = home,
            offset = m.offset(),
            "forwarding a command to its key's home partition"
        );
        self.send(record)?;
        *self.batch_counts.entry((host, FORWARDED)).or_default() += 1;
        Ok(())
    }

    fn command(
        &mut self,
        host: usize,
        partition: i32,
        m: &BorrowedMessage<'_>,
        now: i64,
    ) -> Result<(), BatchError> {
        if let Some(key) = m.key() {
            self.load_state(host, partition, key)?;
        }
        let decided = match m.payload() {
            None => Err(Poison {
                reason: "the record has no value".into(),
                command: None,
            }),
            Some(bytes) => match self.block_on(self.codec.decode_value(bytes, &self.upcasters)) {
                Ok(decoded) => {
                    let stamp = Stamp {
                        command_at_ms: m.timestamp().to_millis().unwrap_or(now),
                        now_ms: now,
                    };
                    self.hosts[host].decide(
                        partition,
                        m.key(),
                        &decoded.full_name,
                        &decoded.value,
                        stamp,
                        self.strict,
                    )
                }
                Err(e @ WireError::Registry(_)) => return Err(e.into()),
                Err(e) => Err(Poison {
                    reason: e.to_string(),
                    command: None,
                }),
            },
        };
        match decided {
            Ok(d) => self.write_decided(host, partition, d, Some(m), now),
            Err(poison) => self.poisoned(host, partition, m, poison, now),
        }
    }

    /// Fire what the hosts have due on their ready partitions (sagas' deadlines and retries), inside the
    /// open transaction; the partitions it touches have their offsets sent with it.
    fn fire_due(&mut self, now: i64) -> Result<(), BatchError> {
        self.fired.clear();
        for host in 0..self.hosts.len() {
            let due = self.hosts[host].due(now, MAX_DUE_PER_BATCH, &|p| self.can_fire((host, p)));
            for (partition, key) in due {
                let stamp = Stamp {
                    command_at_ms: now,
                    now_ms: now,
                };
                self.fired.insert((host, partition));
                match self.hosts[host].decide_due(partition, &key, stamp) {
                    Ok(decided) => self.write_decided(host, partition, decided, None, now)?,
                    Err(why) => {
                        tracing::error!(host = self.hosts[host].aggregate_type(), partition, key = %key, error = %why, "what is due cannot be done; deferred until the state changes");
                        self.hosts[host].defer_due(partition, &key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Encode and write everything a decision leads to: all of it is built before any of it is kept
    /// or sent. `input` is the record decided (none for something due).
    fn write_decided(
        &mut self,
        host: usize,
        partition: i32,
        decided: Decided,
        input: Option<&BorrowedMessage<'_>>,
        now: i64,
    ) -> Result<(), BatchError> {
        let Decided {
            aggregate_id,
            events,
            result,
            sends,
            duplicate,
            state,
        } = decided;
        let encoded = match self.encode(host, &aggregate_id, events, result.as_ref(), state, sends)
        {
            Ok(e) => e,
            Err(Unbuildable::Transient(e)) => {
                self.hosts[host].discard();
                return Err(e.into());
            }
            Err(Unbuildable::Poison(reason)) => {
                self.hosts[host].discard();
                let Some(m) = input else {
                    tracing::error!(host = self.hosts[host].aggregate_type(), partition, key = %aggregate_id, error = %reason, "what is due cannot be written; deferred until the state changes");
                    self.hosts[host].defer_due(partition, &aggregate_id);
                    return Ok(());
                };
                let command = result.map(|result| CommandRef {
                    command_id: result.command_id,
                    aggregate_id: result.aggregate_id,
                    correlation_id: result.correlation_id,
                });
                let poison = Poison { reason, command };
                return self.poisoned(host, partition, m, poison, now);
            }
        };
        for (index, bytes) in encoded
            .sends
            .iter()
            .filter(|(_, _, _, record)| *record)
            .filter_map(|(_, _, bytes, _)| bytes.as_deref())
            .enumerate()
        {
            self.hosts[host].encoded(index, bytes);
        }
        // A batch whose states could not be written is retried input by input: this one's state is
        // built and checked now, so that the input that makes it unwritable is the one refused.
        if self.strict
            && let Some(state) = self.hosts[host].state_after(now)
            && let Err(unbuildable) = state
                .map_err(Unbuildable::Poison)
                .and_then(|value| self.encode_state(host, &aggregate_id, value))
        {
            self.hosts[host].discard();
            let reason = match unbuildable {
                Unbuildable::Transient(e) => return Err(e.into()),
                Unbuildable::Poison(reason) => reason,
            };
            let Some(m) = input else {
                tracing::error!(host = self.hosts[host].aggregate_type(), partition, key = %aggregate_id, error = %reason, "what is due cannot be written; deferred until the state changes");
                self.hosts[host].defer_due(partition, &aggregate_id);
                return Ok(());
            };
            let poison = Poison {
                reason,
                command: None,
            };
            return self.poisoned(host, partition, m, poison, now);
        }
        // Everything is built: keep the state, then write.
        self.hosts[host].commit();
        let outcome = match (duplicate, result.as_ref().map(|r| r.outcome)) {
            (true, Some(_)) => "duplicate",
            (false, Some(CommandOutcome::Accepted)) => "accepted",
            (false, Some(CommandOutcome::Rejected)) => "rejected",
            (true, None) => "ignored",
            (false, None) if input.is_none() => "due",
            (false, None) => "handled",
        };
        *self.batch_counts.entry((host, outcome)).or_default() += 1;
        // Headers continuing the input's trace, for the records this input leads to (not for inputs
        // forwarded unchanged: they keep their own).
        let writes = !encoded.events.is_empty()
            || encoded.result.is_some()
            || encoded.sends.iter().any(|(_, _, bytes, _)| bytes.is_some());
        let out_headers = match input {
            Some(m) if writes => self.trace_headers(m),
            _ => None,
        };
        let key = aggregate_id.as_bytes();
        if let Some(events_topic) = self.hosts[host].topics().events.as_deref() {
            for bytes in &encoded.events {
                let mut record = BaseRecord::to(events_topic)
                    .partition(partition)
                    .key(key)
                    .payload(bytes.as_slice());
                if let Some(h) = &out_headers {
                    record = record.headers(h.clone());
                }
                self.send(record)?;
            }
        }
        if let (Some(m), Some(result), Some(bytes)) = (input, &result, &encoded.result) {
            self.send_result(m, partition, &result.command_id, bytes, &out_headers)?;
        }
        for (topic, record_key, bytes, _) in &encoded.sends {
            let payload = match (bytes, input) {
                (Some(b), _) => Some(b.as_slice()),
                (None, Some(m)) => m.payload(),
                (None, None) => None,
            };
            let count = self.layout.targets.get(topic).copied().unwrap_or(1);
            let mut record = BaseRecord::to(topic.as_str())
                .partition(home_partition(record_key.as_bytes(), count))
                .key(record_key.as_bytes());
            if let Some(p) = payload {
                record = record.payload(p);
            }
            // A forwarded input keeps its own headers (its trace); a new record continues the input's.
            let headers = match (bytes, input) {
                (None, Some(m)) => m.headers().and_then(headers::owned),
                _ => out_headers.clone(),
            };
            if let Some(h) = headers {
                record = record.headers(h);
            }
            self.send(record)?;
        }
        if let Some(state) = encoded.state {
            self.batch_states
                .insert((host, partition, aggregate_id), state);
        }
        Ok(())
    }

    /// The prepared writer of record `full_name` on `topic` (host `host`'s, or [`RESULTS`]): cached per
    /// process, asked of the registry the first time.
    fn writer(
        &self,
        host: usize,
        topic: &str,
        full_name: &'static str,
    ) -> Result<std::sync::Arc<causeway_contracts::wire::Writer>, WireError> {
        if let Some(w) = self.writers.borrow().get(&(host, full_name)) {
            return Ok(std::sync::Arc::clone(w));
        }
        let w = self.block_on(self.codec.writer(topic, full_name))?;
        self.writers
            .borrow_mut()
            .insert((host, full_name), std::sync::Arc::clone(&w));
        Ok(w)
    }

    /// Encode every record a decided command leads to, each within the size limit.
    fn encode(
        &self,
        host: usize,
        aggregate_id: &str,
        events: Vec<causeway_contracts::hosting::OutRecord>,
        result: Option<&CommandResult>,
        state: Option<apache_avro::types::Value>,
        sends: Vec<causeway_contracts::hosting::Outgoing>,
    ) -> Result<Encoded, Unbuildable> {
        let topics = self.hosts[host].topics();
        let key = aggregate_id.len();
        let wire = |e: WireError| match e {
            WireError::Registry(_) => Unbuildable::Transient(e),
            other => Unbuildable::Poison(other.to_string()),
        };
        let fits = |what: &str, topic: &str, bytes: Vec<u8>, key: usize| {
            let size = bytes.len() + key + RECORD_OVERHEAD;
            let max = self.record_limits.of(topic);
            if size > max {
                return Err(Unbuildable::Poison(format!(
                    "{what} would be {size} bytes; {topic} takes at most {max} (max.message.bytes)"
                )));
            }
            Ok(bytes)
        };
        let mut encoded = Vec::with_capacity(events.len());
        if !events.is_empty() {
            let Some(events_topic) = topics.events.as_deref() else {
                return Err(Unbuildable::Poison(format!(
                    "{} has no event store to write events to",
                    self.hosts[host].aggregate_type()
                )));
            };
            for event in events {
                let writer = self
                    .writer(host, events_topic, event.full_name)
                    .map_err(wire)?;
                let mut bytes = Vec::with_capacity(128);
                event.write(&writer, &mut bytes).map_err(wire)?;
                encoded.push(fits(event.full_name, events_topic, bytes, key)?);
            }
        }
        let result = match result {
            None => None,
            Some(result) => {
                let result_key = result.command_id.len();
                let writer = self
                    .writer(RESULTS, &self.config.results_topic, RESULT_RECORD)
                    .map_err(wire)?;
                let mut bytes = Vec::with_capacity(128);
                writer.write(result, &mut bytes).map_err(wire)?;
                Some(fits(
                    "the command result",
                    &self.config.results_topic,
                    bytes,
                    result_key,
                )?)
            }
        };
        let state = match (state, topics.changelog.as_deref()) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(Unbuildable::Poison(format!(
                    "{} has no changelog to write its state to",
                    self.hosts[host].aggregate_type()
                )));
            }
            (Some(value), Some(changelog)) => {
                let bytes = self
                    .block_on(self.codec.encode_value(
                        changelog,
                        self.hosts[host].state_record(),
                        value,
                    ))
                    .map_err(wire)?;
                Some(fits("the state record", changelog, bytes, key)?)
            }
        };
        let mut out = Vec::with_capacity(sends.len());
        for send in sends {
            if !self.layout.targets.contains_key(&send.topic) {
                return Err(Unbuildable::Poison(format!(
                    "{} sends to {}, which it did not declare among its targets",
                    self.hosts[host].aggregate_type(),
                    send.topic
                )));
            }
            let (bytes, record) = match send.body {
                Body::Record { full_name, value } => {
                    let bytes = self
                        .block_on(self.codec.encode_value(&send.topic, full_name, value))
                        .map_err(wire)?;
                    (
                        Some(fits(full_name, &send.topic, bytes, send.key.len())?),
                        true,
                    )
                }
                Body::Encoded(bytes) => (Some(bytes), false),
                Body::Input => (None, false),
            };
            out.push((send.topic, send.key, bytes, record));
        }
        Ok(Encoded {
            events: encoded,
            result,
            state,
            sends: out,
        })
    }

    /// The state record `value` of `key` encoded for `host`'s changelog and checked against the topic's
    /// limit (`None`: the host keeps no changelog).
    fn encode_state(
        &self,
        host: usize,
        key: &str,
        value: apache_avro::types::Value,
    ) -> Result<Option<Vec<u8>>, Unbuildable> {
        let Some(topic) = self.hosts[host].topics().changelog.as_deref() else {
            return Ok(None);
        };
        let bytes = self
            .block_on(
                self.codec
                    .encode_value(topic, self.hosts[host].state_record(), value),
            )
            .map_err(|e| match e {
                WireError::Registry(_) => Unbuildable::Transient(e),
                other => Unbuildable::Poison(other.to_string()),
            })?;
        let size = bytes.len() + key.len() + RECORD_OVERHEAD;
        let limit = self.record_limits.of(topic);
        if size > limit {
            return Err(Unbuildable::Poison(format!(
                "the state of {key} would be {size} bytes; {topic} takes at most {limit}"
            )));
        }
        Ok(Some(bytes))
    }

    /// A poison command: its dead letter, and its result when its id could be read.
    fn poisoned(
        &mut self,
        host: usize,
        partition: i32,
        m: &BorrowedMessage<'_>,
        poison: Poison,
        now: i64,
    ) -> Result<(), BatchError> {
        self.dead_letter(m, &poison.reason, now)?;
        let aggregate = self.hosts[host].aggregate_type();
        *self
            .batch_counts
            .entry((host, "dead_lettered"))
            .or_default() += 1;
        let Some(command) = poison.command else {
            return Ok(());
        };
        let result: CommandResult =
            command.dead_lettered(aggregate, &poison.reason, self.limits, now);
        match self.block_on(
            self.codec
                .encode(&self.config.results_topic, RESULT_RECORD, &result),
        ) {
            Ok(bytes) => {
                let spans = self.spans.len();
                let trace = self.trace_headers(m);
                // Its span (if it opened one) says what became of it.
                if let Some(cx) = self.spans.get(spans) {
                    causeway_observe::propagation::failed(cx, "dead-lettered");
                }
                self.send_result(m, partition, &result.command_id, &bytes, &trace)?;
            }
            Err(e @ WireError::Registry(_)) => return Err(e.into()),
            Err(e) => {
                tracing::error!(error = %e, command_id = %result.command_id, "cannot write the result of a dead-lettered command");
            }
        }
        Ok(())
    }

    /// Headers continuing `m`'s trace, for every record it leads to: the context of its span (kept
    /// until the transaction ends, when spans are exported).
    fn trace_headers(&mut self, m: &BorrowedMessage<'_>) -> Option<OwnedHeaders> {
        let h = m.headers()?;
        let cx = causeway_observe::propagation::consumed(
            &headers::trace_context(h),
            self.span,
            headers::consumed(m),
        );
        let out = headers::with_trace_context(OwnedHeaders::new(), &cx);
        if causeway_observe::propagation::exporting()
            && causeway_observe::propagation::is_traced(&cx)
        {
            self.spans.push(cx);
        }
        Some(out)
    }

    /// The result of command `m`, with the trace context and where the command is (for the event
    /// history).
    fn send_result(
        &self,
        m: &BorrowedMessage<'_>,
        partition: i32,
        command_id: &str,
        bytes: &[u8],
        headers: &Option<OwnedHeaders>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let mut h = headers.clone().unwrap_or_default();
        let at_partition = m.partition().to_string();
        let at_offset = m.offset().to_string();
        for (key, value) in [
            (headers::command::TOPIC, m.topic()),
            (headers::command::PARTITION, at_partition.as_str()),
            (headers::command::OFFSET, at_offset.as_str()),
        ] {
            h = h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let record = BaseRecord::to(&self.config.results_topic)
            .partition(partition % self.layout.results)
            .key(command_id.as_bytes())
            .payload(bytes)
            .headers(h);
        self.send(record)
    }
}
