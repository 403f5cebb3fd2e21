//! Hosting a saga type: how its Rust types meet their Avro contracts ([`SagaContract`]), the held
//! instances of the inbox partitions a process owns ([`SagaHost`]), and the routers that bring its inputs
//! to its inbox keyed by saga id ([`SagaRouter`]). Pure apart from the clock handed in, like
//! [`crate::hosting`]: the processor (crates/kafka) does every read and write.
//!
//! The flow (docs/adr/0013-sagas.md): a router consumes the source topics (the event stores the saga
//! reads, and the command results) and forwards each record that belongs to an instance, unchanged, to
//! `<context>.<saga>.inbox` keyed by saga id, so one instance lives on one partition. The host consumes
//! the inbox: each input becomes an [`Incoming`] for its [`Instance`], whose transition (commands to
//! send, the instance after it) is written in the same transaction as the changelog record and the
//! offsets. Deadlines and retries are part of the instance; [`Hosted::due`] finds them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use apache_avro::types::Value;
use causeway_core::saga::{
    Entry, Incoming, Instance, Pending, Policy, Reply, Saga, Sent, Status, Timer, Transition,
    command_id_prefix,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::{AggregateContract, ReadError, read_record};
use crate::hosting::{
    Body, Decided, Dirty, Hosted, Limits, Outgoing, Poison, Stamp, Topics, cut, panic_message,
};
use crate::records::{
    CommandOutcome, CommandResult, SagaHistoryEntry, SagaRecord, SagaRequest, SagaTimer,
};

/// The full name of the command result record, the replies a saga reads.
pub const RESULT_RECORD: &str = "causeway.CommandResult";

/// A command of a saga as a record: where it goes and what it is.
#[derive(Debug)]
pub struct CommandRecord {
    /// The aggregate type it addresses (its topic is `<context>.<type>.commands`).
    pub aggregate_type: &'static str,
    /// The aggregate id: the record key.
    pub aggregate_id: String,
    /// The record's full name.
    pub full_name: &'static str,
    /// Its value.
    pub value: Value,
}

/// `command` of aggregate `A` as a record, with its ids written in (for [`SagaContract::command_record`]).
pub fn command_to<A: AggregateContract>(
    command: A::Command,
    command_id: String,
    correlation_id: String,
) -> Result<CommandRecord, String> {
    let (full_name, aggregate_id, value) = A::command_record(command, command_id, correlation_id)?;
    Ok(CommandRecord {
        aggregate_type: A::TYPE,
        aggregate_id,
        full_name,
        value,
    })
}

/// A saga whose inputs, commands and state have Avro contracts. The state itself (`Self`) is the
/// `state` field of its changelog record (`SagaRecord<Self>`).
pub trait SagaContract:
    Saga<Event: Send, Command: Send> + Serialize + DeserializeOwned + Send + 'static
{
    /// Full name of its changelog record, e.g. `causeway.orders.fulfilment.OrderFulfilmentState`.
    const STATE_RECORD: &'static str;

    /// The aggregate types whose events it reads (their `<context>.<type>.events` are routed).
    const SOURCES: &'static [&'static str];

    /// The aggregate types it sends commands to.
    const TARGETS: &'static [&'static str];

    /// The event in record `full_name`: `None` when the record is not one of the events it reads.
    fn event(full_name: &str, value: &Value) -> Option<Result<Self::Event, ReadError>>;

    /// `command` as a record, with its command id and correlation id (the saga id) written in.
    fn command_record(
        command: Self::Command,
        command_id: String,
        correlation_id: String,
    ) -> Result<CommandRecord, String>;
}

/// The topics of saga `name` in `context`: it consumes `<context>.<name>.inbox` and keeps
/// `<context>.<name>.changelog`.
pub fn saga_topics(context: &str, name: &str) -> Topics {
    Topics {
        input: format!("{context}.{name}.inbox"),
        events: None,
        changelog: Some(format!("{context}.{name}.changelog")),
    }
}

/// What a saga host tells whoever measures it, once what it reports is durable (or, for restored and
/// dropped instances, as it happens).
pub trait SagaObserver: Send + Sync {
    /// An instance of `saga` moved from one status to another (`None`: not held) as this process counts
    /// them (restored and dropped instances included).
    fn moved(&self, saga: &'static str, from: Option<Status>, to: Option<Status>);
    /// An instance of `saga` began compensating.
    fn compensating(&self, saga: &'static str);
    /// An instance of `saga` finished with `status`, `ms` after it started.
    fn finished(&self, saga: &'static str, status: Status, ms: i64);
    /// Deadline `name` of an instance of `saga` fired.
    fn fired(&self, saga: &'static str, name: &str);
    /// An instance of `saga` left `step` after `ms`.
    fn stepped(&self, saga: &'static str, step: &str, ms: i64);
    /// The open instance longest in its current step entered it at `since_ms` (`None`: none open).
    fn oldest_open_step(&self, _saga: &'static str, _since_ms: Option<i64>) {}
}

/// An observer that measures nothing.
#[derive(Debug, Default)]
pub struct Unobserved;

impl SagaObserver for Unobserved {
    fn moved(&self, _: &'static str, _: Option<Status>, _: Option<Status>) {}
    fn compensating(&self, _: &'static str) {}
    fn finished(&self, _: &'static str, _: Status, _: i64) {}
    fn fired(&self, _: &'static str, _: &str) {}
    fn stepped(&self, _: &'static str, _: &str, _: i64) {}
}

/// What a committed transition reports, held until its transaction commits.
enum Report {
    /// Instance (partition, saga id) is now in this status.
    Now(i32, String, Status),
    Finished(Status, i64),
    Fired(String),
    Stepped(String, i64),
}

/// A decided input waiting for commit.
struct Decision<S: Saga> {
    partition: i32,
    saga_id: String,
    transition: Transition<S>,
    /// Topic and key of each new command, in order.
    targets: Vec<(String, String)>,
}

/// The [`Hosted`] implementation for saga `S`.
pub struct SagaHost<S: SagaContract> {
    topics: Topics,
    context: String,
    policy: Policy,
    limits: Limits,
    observer: Arc<dyn SagaObserver>,
    partitions: HashMap<i32, HashMap<String, Instance<S>>>,
    /// What is due when: (time, partition, saga id), one entry per instance with something due.
    due: BTreeSet<(i64, i32, String)>,
    decided: Option<Decision<S>>,
    dirty: HashSet<(i32, String)>,
    /// Reports of decisions kept in the open transaction.
    reports: Vec<Report>,
    /// The status of each instance as last reported durable: what the observer counts it under.
    reported: HashMap<(i32, String), Status>,
    /// Open instances by when they entered their current step: (step since, partition, saga id).
    open: BTreeSet<(i64, i32, String)>,
    /// The oldest step start last told to the observer.
    oldest_reported: Option<Option<i64>>,
    /// Partitions being restored: until they are whole, the oldest open step is not told (an
    /// instance's older changelog records may be all that was read of it so far).
    restoring: HashSet<i32>,
}

impl<S: SagaContract> std::fmt::Debug for SagaHost<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaHost")
            .field("saga", &S::NAME)
            .field("instances", &self.states())
            .finish_non_exhaustive()
    }
}

impl<S: SagaContract> SagaHost<S> {
    /// Host `S` in `context` under `policy`, reporting to `observer`.
    pub fn new(
        context: &str,
        policy: Policy,
        limits: Limits,
        observer: Arc<dyn SagaObserver>,
    ) -> Self {
        Self {
            topics: saga_topics(context, S::NAME),
            context: context.to_string(),
            policy,
            limits,
            observer,
            partitions: HashMap::new(),
            due: BTreeSet::new(),
            decided: None,
            dirty: HashSet::new(),
            reports: Vec::new(),
            reported: HashMap::new(),
            open: BTreeSet::new(),
            oldest_reported: None,
            restoring: HashSet::new(),
        }
    }

    fn instance(&self, partition: i32, saga_id: &str) -> Option<&Instance<S>> {
        self.partitions.get(&partition)?.get(saga_id)
    }

    /// Run `incoming` for `saga_id` and build what it leads to; the held instance is unchanged.
    fn run(
        &mut self,
        partition: i32,
        saga_id: &str,
        incoming: Incoming<'_, S::Event>,
        what: &str,
        stamp: Stamp,
    ) -> Result<Decided, String> {
        let empty = Instance::default();
        let instance = self.instance(partition, saga_id).unwrap_or(&empty);
        let policy = &self.policy;
        // The domain's code runs here; a panic in it is the input's fault, not the process's.
        let transition = catch_unwind(AssertUnwindSafe(|| {
            instance.handle(saga_id, incoming, stamp.now_ms, policy)
        }))
        .map_err(|panic| {
            format!(
                "the {} saga panicked on {what}: {}",
                S::NAME,
                panic_message(panic.as_ref())
            )
        })?;
        let Some(transition) = transition else {
            return Ok(Decided {
                aggregate_id: saga_id.to_string(),
                events: Vec::new(),
                result: None,
                sends: Vec::new(),
                duplicate: true,
                state: None,
            });
        };
        let mut sends = Vec::with_capacity(transition.send.len() + transition.resend.len());
        let mut targets = Vec::with_capacity(transition.send.len());
        for out in &transition.send {
            let record = S::command_record(
                out.command.clone(),
                out.command_id.clone(),
                saga_id.to_string(),
            )
            .map_err(|e| format!("cannot write the command of {}: {e}", out.key))?;
            let topic = format!("{}.{}.commands", self.context, record.aggregate_type);
            targets.push((topic.clone(), record.aggregate_id.clone()));
            sends.push(Outgoing {
                topic,
                key: record.aggregate_id,
                body: Body::Record {
                    full_name: record.full_name,
                    value: record.value,
                },
            });
        }
        for sent in &transition.resend {
            sends.push(Outgoing {
                topic: sent.topic.clone(),
                key: sent.key.clone(),
                body: Body::Encoded(sent.payload.clone()),
            });
        }
        self.decided = Some(Decision {
            partition,
            saga_id: saga_id.to_string(),
            transition,
            targets,
        });
        Ok(Decided {
            aggregate_id: saga_id.to_string(),
            events: Vec::new(),
            result: None,
            sends,
            duplicate: false,
            state: None,
        })
    }

    /// Tell the observer instance (`partition`, `saga_id`) is now in `to` (`None`: no longer held), from
    /// the status it was last counted under.
    fn report_now(&mut self, partition: i32, saga_id: &str, to: Option<Status>) {
        let key = (partition, saga_id.to_string());
        let from = match to {
            Some(to) => self.reported.insert(key, to),
            None => self.reported.remove(&key),
        };
        if from != to {
            self.observer.moved(S::NAME, from, to);
        }
    }

    fn index(&mut self, partition: i32, saga_id: &str, before: Option<i64>, after: Option<i64>) {
        if let Some(at) = before {
            self.due.remove(&(at, partition, saga_id.to_string()));
        }
        if let Some(at) = after {
            self.due.insert((at, partition, saga_id.to_string()));
        }
    }

    /// Move instance (`partition`, `saga_id`) in the index of open steps: it was open in a step since
    /// `before`, is now open since `after` (`None`: not held or finished).
    fn reopen(&mut self, partition: i32, saga_id: &str, before: Option<i64>, after: Option<i64>) {
        if before == after {
            return;
        }
        if let Some(since) = before {
            self.open.remove(&(since, partition, saga_id.to_string()));
        }
        if let Some(since) = after {
            self.open.insert((since, partition, saga_id.to_string()));
        }
    }

    /// Tell the observer when the oldest open step began, if that changed since it was last told and
    /// no partition is being restored.
    fn report_oldest(&mut self) {
        if !self.restoring.is_empty() {
            return;
        }
        let oldest = self.open.first().map(|(since, _, _)| *since);
        if self.oldest_reported != Some(oldest) {
            self.oldest_reported = Some(oldest);
            self.observer.oldest_open_step(S::NAME, oldest);
        }
    }

    fn record(&self, saga_id: &str, instance: &Instance<S>, now_ms: i64) -> SagaRecord<S> {
        SagaRecord {
            saga_id: saga_id.to_string(),
            status: instance.status().as_str().to_string(),
            step: instance.state.step().to_string(),
            state: instance.state.clone(),
            pending: instance
                .pending
                .iter()
                .map(|p| SagaRequest {
                    key: p.key.clone(),
                    command_id: p.command_id.clone(),
                    attempts: i32::try_from(p.attempts).unwrap_or(i32::MAX),
                    first_sent_at: p.first_sent_at,
                    retry_at: p.retry_at,
                    topic: p.sent.topic.clone(),
                    record_key: p.sent.key.clone(),
                    payload: p.sent.payload.clone(),
                })
                .collect(),
            timers: instance
                .timers
                .iter()
                .map(|t| SagaTimer {
                    name: t.name.clone(),
                    at: t.at,
                })
                .collect(),
            history: instance
                .history
                .iter()
                .map(|e| SagaHistoryEntry {
                    at: e.at,
                    step: e.step.clone(),
                    what: cut(&e.what, self.limits.max_reason_bytes).to_string(),
                })
                .collect(),
            started_at: instance.started_at,
            step_since: instance.step_since,
            updated_at: now_ms,
            deadlines_fired: i32::try_from(instance.deadlines_fired).unwrap_or(i32::MAX),
        }
    }
}

/// When `instance` entered its current step, while it is open (started, and not finished with nothing
/// awaited: what `causeway saga stuck` lists).
fn open_since<S: Saga>(instance: &Instance<S>) -> Option<i64> {
    instance.is_open().then_some(instance.step_since)
}

/// The instance a changelog record holds.
fn instance_of<S: Saga>(record: SagaRecord<S>) -> Instance<S> {
    let mut instance = Instance::default();
    instance.state = record.state;
    instance.pending = record
        .pending
        .into_iter()
        .map(|p| Pending {
            key: p.key,
            command_id: p.command_id,
            attempts: u32::try_from(p.attempts).unwrap_or(0),
            first_sent_at: p.first_sent_at,
            retry_at: p.retry_at,
            sent: Sent {
                topic: p.topic,
                key: p.record_key,
                payload: p.payload,
            },
        })
        .collect();
    instance.timers = record
        .timers
        .into_iter()
        .map(|t| Timer {
            name: t.name,
            at: t.at,
        })
        .collect();
    instance.history = record
        .history
        .into_iter()
        .map(|e| Entry {
            at: e.at,
            step: e.step,
            what: e.what,
        })
        .collect();
    instance.started_at = record.started_at;
    instance.step_since = record.step_since;
    instance.updated_at = record.updated_at;
    instance.deadlines_fired = u32::try_from(record.deadlines_fired).unwrap_or(0);
    instance
}

/// The reply a command result carries.
fn reply_of(result: &CommandResult) -> Reply<'_> {
    match result.outcome {
        CommandOutcome::Accepted => Reply::Accepted,
        CommandOutcome::Rejected => Reply::Rejected {
            code: result.rejection_code.as_deref().unwrap_or(""),
            reason: result.reason.as_deref().unwrap_or(""),
        },
    }
}

impl<S: SagaContract> Hosted for SagaHost<S> {
    fn aggregate_type(&self) -> &'static str {
        S::NAME
    }

    fn topics(&self) -> &Topics {
        &self.topics
    }

    fn state_record(&self) -> &'static str {
        S::STATE_RECORD
    }

    fn decide(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        full_name: &str,
        value: &Value,
        stamp: Stamp,
        _with_state: bool,
    ) -> Result<Decided, Poison> {
        let poison = |reason: String| Poison {
            reason,
            command: None,
        };
        let saga_id = match key.map(std::str::from_utf8) {
            Some(Ok(k)) if !k.is_empty() && k.len() <= self.limits.max_id_bytes => k.to_string(),
            _ => {
                return Err(poison(format!(
                    "an input of saga {} needs its saga id as the record key (UTF-8, 1 to {} \
                     bytes)",
                    S::NAME,
                    self.limits.max_id_bytes
                )));
            }
        };
        if full_name == RESULT_RECORD {
            let result: CommandResult =
                read_record(full_name, value).map_err(|e| poison(e.to_string()))?;
            let incoming = Incoming::Result {
                command_id: &result.command_id,
                reply: reply_of(&result),
            };
            return self
                .run(partition, &saga_id, incoming, &result.command_id, stamp)
                .map_err(poison);
        }
        let event = match S::event(full_name, value) {
            None => {
                return Err(poison(format!(
                    "{full_name} is not an input of saga {}",
                    S::NAME
                )));
            }
            Some(Err(e)) => return Err(poison(e.to_string())),
            Some(Ok(event)) => event,
        };
        if S::saga_id(&event).as_deref() != Some(saga_id.as_str()) {
            return Err(poison(format!(
                "the record key {saga_id:?} is not the saga id of its {full_name}"
            )));
        }
        let name = full_name.rsplit('.').next().unwrap_or(full_name);
        let incoming = Incoming::Event {
            event: &event,
            name,
        };
        self.run(partition, &saga_id, incoming, full_name, stamp)
            .map_err(poison)
    }

    fn encoded(&mut self, index: usize, payload: &[u8]) {
        let Some(decided) = &mut self.decided else {
            return;
        };
        let Some((topic, key)) = decided.targets.get(index) else {
            return;
        };
        let sent = Sent {
            topic: topic.clone(),
            key: key.clone(),
            payload: payload.to_vec(),
        };
        decided.transition.sent(index, sent);
    }

    fn commit(&mut self) {
        let Some(Decision {
            partition,
            saga_id,
            transition,
            ..
        }) = self.decided.take()
        else {
            return;
        };
        let before = self.instance(partition, &saga_id);
        let (from, due_before, open_before) = (
            before.filter(|i| i.started_at != 0).map(Instance::status),
            before.and_then(Instance::next_due),
            before.and_then(open_since),
        );
        let next = transition.instance;
        let to = next.status();
        if from != Some(to) {
            self.reports
                .push(Report::Now(partition, saga_id.clone(), to));
            if to.is_terminal() {
                self.reports
                    .push(Report::Finished(to, next.updated_at - next.started_at));
            }
        }
        for name in transition.fired {
            self.reports.push(Report::Fired(name));
        }
        if let Some((step, ms)) = transition.left_step {
            self.reports.push(Report::Stepped(step, ms));
        }
        let due_after = next.next_due();
        self.index(partition, &saga_id, due_before, due_after);
        self.reopen(partition, &saga_id, open_before, open_since(&next));
        self.dirty.insert((partition, saga_id.clone()));
        self.partitions
            .entry(partition)
            .or_default()
            .insert(saga_id, next);
    }

    fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    fn take_dirty(
        &mut self,
        now_ms: i64,
        writer: &crate::wire::Writer,
        out: &mut Vec<Dirty>,
    ) -> Result<(), String> {
        for (partition, saga_id) in self.dirty.drain().collect::<Vec<_>>() {
            let Some(instance) = self.instance(partition, &saga_id) else {
                continue;
            };
            let record = self.record(&saga_id, instance, now_ms);
            let mut bytes = Vec::with_capacity(256);
            writer
                .write(&record, &mut bytes)
                .map_err(|e| format!("saga {} {saga_id}: {e}", S::NAME))?;
            out.push(Dirty {
                partition,
                aggregate_id: saga_id,
                bytes,
            });
        }
        Ok(())
    }

    fn discard(&mut self) {
        self.decided = None;
    }

    fn aborted(&mut self) {
        self.decided = None;
        self.reports.clear();
    }

    fn restore(&mut self, partition: i32, key: &str, value: Option<&Value>) -> Result<(), String> {
        self.restoring.insert(partition);
        let before = self.instance(partition, key);
        let (due_before, open_before) = (
            before.and_then(Instance::next_due),
            before.and_then(open_since),
        );
        let next = match value {
            None => None,
            Some(v) => {
                let record: SagaRecord<S> =
                    apache_avro::from_value(v).map_err(|e| format!("{}: {e}", S::STATE_RECORD))?;
                Some(instance_of(record))
            }
        };
        let (to, due_after) = (
            next.as_ref().map(Instance::status),
            next.as_ref().and_then(Instance::next_due),
        );
        self.index(partition, key, due_before, due_after);
        // Told once the partition is restored (`restored`): halfway through, the changelog's older
        // records of an instance may still be all that was read of it.
        self.reopen(
            partition,
            key,
            open_before,
            next.as_ref().and_then(open_since),
        );
        self.report_now(partition, key, to);
        let states = self.partitions.entry(partition).or_default();
        match next {
            Some(i) => {
                states.insert(key.to_string(), i);
            }
            None => {
                states.remove(key);
            }
        }
        Ok(())
    }

    fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        let gone: Vec<String> = self
            .reported
            .keys()
            .filter(|(p, _)| *p == partition)
            .map(|(_, k)| k.clone())
            .collect();
        for key in gone {
            self.report_now(partition, &key, None);
        }
        self.due.retain(|(_, p, _)| *p != partition);
        self.open.retain(|(_, p, _)| *p != partition);
        self.dirty.retain(|(p, _)| *p != partition);
        self.restoring.remove(&partition);
        self.report_oldest();
    }

    fn states(&self) -> usize {
        self.partitions.values().map(HashMap::len).sum()
    }

    fn targets(&self) -> Vec<String> {
        S::TARGETS
            .iter()
            .map(|t| format!("{}.{t}.commands", self.context))
            .collect()
    }

    fn due(&self, now_ms: i64, max: usize, ready: &dyn Fn(i32) -> bool) -> Vec<(i32, String)> {
        self.due
            .iter()
            .take_while(|(at, _, _)| *at <= now_ms)
            .filter(|(_, p, _)| ready(*p))
            .take(max)
            .map(|(_, p, k)| (*p, k.clone()))
            .collect()
    }

    fn answers_commands(&self) -> bool {
        false
    }

    fn state_after(&self, now_ms: i64) -> Option<Result<Value, String>> {
        let decided = self.decided.as_ref()?;
        let record = self.record(&decided.saga_id, &decided.transition.instance, now_ms);
        Some(
            apache_avro::to_value(&record)
                .map_err(|e| format!("saga {} {}: {e}", S::NAME, decided.saga_id)),
        )
    }

    fn defer_due(&mut self, partition: i32, key: &str) {
        self.due.retain(|(_, p, k)| !(*p == partition && k == key));
    }

    fn decide_due(&mut self, partition: i32, key: &str, stamp: Stamp) -> Result<Decided, String> {
        let decided = self.run(partition, key, Incoming::Tick, "a deadline or retry", stamp)?;
        if decided.duplicate {
            // Nothing was due after all (the index was behind): not offered again until it changes.
            self.defer_due(partition, key);
        }
        Ok(decided)
    }

    fn restored(&mut self, partition: i32) {
        self.restoring.remove(&partition);
        self.report_oldest();
    }

    fn durable(&mut self) {
        for report in std::mem::take(&mut self.reports) {
            match report {
                Report::Now(partition, saga_id, to) => {
                    let from = self.reported.insert((partition, saga_id), to);
                    if from != Some(to) {
                        self.observer.moved(S::NAME, from, Some(to));
                        if to == Status::Compensating {
                            self.observer.compensating(S::NAME);
                        }
                    }
                }
                Report::Finished(status, ms) => self.observer.finished(S::NAME, status, ms),
                Report::Fired(name) => self.observer.fired(S::NAME, &name),
                Report::Stepped(step, ms) => self.observer.stepped(S::NAME, &step, ms),
            }
        }
        self.report_oldest();
    }
}

/// How a router finds the instance a source record belongs to, for one saga type.
#[derive(Clone)]
pub struct Route {
    /// The saga's name.
    pub saga: &'static str,
    /// Its inbox topic.
    pub inbox: String,
    /// The prefix of its command ids (`<saga>/`): results of those commands are its replies.
    pub command_prefix: String,
    /// The saga id of an event record (`None`: not one of its events or instances).
    pub event_id: EventId,
}

/// The saga id of an event record (full name, value): `None` when the record is not one of the saga's
/// events, `Some(Ok(None))` when it is but belongs to no instance, `Some(Err(why))` when it cannot be read.
pub type EventId = fn(&str, &Value) -> Option<Result<Option<String>, String>>;

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("saga", &self.saga)
            .field("inbox", &self.inbox)
            .finish_non_exhaustive()
    }
}

impl Route {
    /// The route of saga `S` in `context`.
    pub fn of<S: SagaContract>(context: &str) -> Self {
        Self {
            saga: S::NAME,
            inbox: saga_topics(context, S::NAME).input,
            command_prefix: command_id_prefix::<S>(),
            event_id: |full_name, value| {
                S::event(full_name, value).map(|read| {
                    read.map(|event| S::saga_id(&event))
                        .map_err(|e| e.to_string())
                })
            },
        }
    }
}

/// Consumes one source topic and forwards each record that belongs to a saga instance, unchanged, to
/// that saga's inbox keyed by saga id. Holds no state.
#[derive(Debug)]
pub struct SagaRouter {
    topics: Topics,
    routes: Vec<Route>,
    limits: Limits,
}

impl SagaRouter {
    /// A router of `source` along `routes`.
    pub fn new(source: &str, routes: Vec<Route>, limits: Limits) -> Self {
        Self {
            topics: Topics {
                input: source.to_string(),
                events: None,
                changelog: None,
            },
            routes,
            limits,
        }
    }

    fn forward(&self, inbox: &str, saga_id: &str, out: &mut Vec<Outgoing>) {
        out.push(Outgoing {
            topic: inbox.to_string(),
            key: saga_id.to_string(),
            body: Body::Input,
        });
    }
}

impl Hosted for SagaRouter {
    fn aggregate_type(&self) -> &'static str {
        "saga-router"
    }

    fn topics(&self) -> &Topics {
        &self.topics
    }

    fn state_record(&self) -> &'static str {
        ""
    }

    fn decide(
        &mut self,
        _partition: i32,
        _key: Option<&[u8]>,
        full_name: &str,
        value: &Value,
        _stamp: Stamp,
        _with_state: bool,
    ) -> Result<Decided, Poison> {
        let mut sends = Vec::new();
        if full_name == RESULT_RECORD {
            let command_id = crate::hosting::string_field(value, "command_id").unwrap_or("");
            let correlation_id =
                crate::hosting::string_field(value, "correlation_id").unwrap_or("");
            for route in &self.routes {
                if command_id.starts_with(&route.command_prefix)
                    && !correlation_id.is_empty()
                    && correlation_id.len() <= self.limits.max_id_bytes
                {
                    self.forward(&route.inbox, correlation_id, &mut sends);
                }
            }
        } else {
            for route in &self.routes {
                match (route.event_id)(full_name, value) {
                    None | Some(Ok(None)) => {}
                    Some(Ok(Some(id)))
                        if !id.is_empty() && id.len() <= self.limits.max_id_bytes =>
                    {
                        self.forward(&route.inbox, &id, &mut sends);
                    }
                    Some(Ok(Some(id))) => {
                        return Err(Poison {
                            reason: format!(
                                "the saga id of this {full_name} is {} bytes; 1 to {} are allowed",
                                id.len(),
                                self.limits.max_id_bytes
                            ),
                            command: None,
                        });
                    }
                    Some(Err(why)) => {
                        return Err(Poison {
                            reason: format!("saga {}: {why}", route.saga),
                            command: None,
                        });
                    }
                }
            }
        }
        Ok(Decided {
            aggregate_id: String::new(),
            events: Vec::new(),
            result: None,
            duplicate: sends.is_empty(),
            sends,
            state: None,
        })
    }

    fn commit(&mut self) {}

    fn has_dirty(&self) -> bool {
        false
    }

    fn take_dirty(
        &mut self,
        _now_ms: i64,
        _writer: &crate::wire::Writer,
        _out: &mut Vec<Dirty>,
    ) -> Result<(), String> {
        Ok(())
    }

    fn discard(&mut self) {}

    fn restore(&mut self, _: i32, _: &str, _: Option<&Value>) -> Result<(), String> {
        Ok(())
    }

    fn drop_partition(&mut self, _partition: i32) {}

    fn states(&self) -> usize {
        0
    }

    fn home_keyed(&self) -> bool {
        false
    }

    fn answers_commands(&self) -> bool {
        false
    }

    fn starts_at_end(&self) -> bool {
        true
    }

    fn targets(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.inbox.clone()).collect()
    }
}
