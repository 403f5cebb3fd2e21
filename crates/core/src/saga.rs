//! The saga contract: a long-running process across aggregates, as a pure state machine from events and
//! command replies (and deadlines) to commands.
//!
//! A domain writes the [`Saga`]: what each input does to its state, which commands it sends (each under a
//! request key unique within the saga instance), which named deadlines it starts or clears. The
//! framework keeps the rest in an [`Instance`]: the commands awaiting a reply (retried with backoff, then
//! answered [`Reply::NoAnswer`]), the deadlines as absolute times, and the history of steps. Both are
//! pure and take the clock as an argument, so the orchestrator can run them inside a Kafka transaction
//! and the testkit can run them with time under the test's control.
//!
//! Every command an instance sends has the deterministic id `<saga name>/<saga id>/<request key>` and the
//! saga id as its correlation id: a resend is idempotent at the aggregate, and the reply (the command's
//! result) finds its way back to the instance by the correlation id.

use std::collections::VecDeque;
use std::fmt;

/// Where a saga instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Going forward.
    Running,
    /// Undoing what it did, in reverse order.
    Compensating,
    /// Done: every step succeeded.
    Completed,
    /// Done: it gave up and every compensation ran.
    Compensated,
    /// Done without reaching either: an operator must look.
    Failed,
}

impl Status {
    /// The lowercase name used in state records, metrics and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Compensating => "compensating",
            Status::Completed => "completed",
            Status::Compensated => "compensated",
            Status::Failed => "failed",
        }
    }

    /// The status named `name` ([`Status::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Every status.
    pub const ALL: [Status; 5] = [
        Status::Running,
        Status::Compensating,
        Status::Completed,
        Status::Compensated,
        Status::Failed,
    ];

    /// No further step will be taken.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Compensated | Status::Failed
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to a command the saga sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// The aggregate accepted it.
    Accepted,
    /// The aggregate rejected it (or it was dead-lettered: code `dead_lettered`).
    Rejected {
        /// Machine-readable code.
        code: &'a str,
        /// For a person.
        reason: &'a str,
    },
    /// No answer came, after every retry.
    NoAnswer,
}

/// What a saga reacts to.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a, E> {
    /// An event routed to this instance (the first one starts it).
    Event(&'a E),
    /// The reply to the command sent under request key `request`.
    Reply {
        /// The request key the command was sent under.
        request: &'a str,
        /// Its answer.
        reply: Reply<'a>,
        /// How many times the command was sent. Above 1, a rejection is not the last word: a later
        /// send, once out of the aggregate's idempotency window, may still be applied (a saga that
        /// compensates treats it as possibly done).
        sends: u32,
    },
    /// The named deadline passed.
    Deadline(&'a str),
}

/// A command to send under a request key unique within the instance (its command id is derived from
/// it: sending the same key again while it is awaited is ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct Request<C> {
    /// The request key, e.g. `reserve/tea`.
    pub key: String,
    /// The command.
    pub command: C,
}

/// What one input does: the next state, the commands to send, the deadlines to start (from now, by
/// name) and to clear, and the requests no longer awaited (their replies and retries stop).
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction<S, C> {
    /// The state after the input.
    pub state: S,
    /// Commands to send.
    pub send: Vec<Request<C>>,
    /// Deadlines to start now (a running one of the same name starts again).
    pub start: Vec<&'static str>,
    /// Deadlines to clear.
    pub clear: Vec<&'static str>,
    /// Request keys no longer awaited.
    pub abandon: Vec<String>,
}

impl<S, C> Reaction<S, C> {
    /// `state`, with nothing sent, started or cleared.
    pub fn to(state: S) -> Self {
        Self {
            state,
            send: Vec::new(),
            start: Vec::new(),
            clear: Vec::new(),
            abandon: Vec::new(),
        }
    }

    /// Also send `command` under `key`.
    pub fn send(mut self, key: impl Into<String>, command: C) -> Self {
        self.send.push(Request {
            key: key.into(),
            command,
        });
        self
    }

    /// Also start deadline `name`.
    pub fn start(mut self, name: &'static str) -> Self {
        self.start.push(name);
        self
    }

    /// Also clear deadline `name`.
    pub fn clear(mut self, name: &'static str) -> Self {
        self.clear.push(name);
        self
    }

    /// Also stop awaiting the reply to `key`.
    pub fn abandon(mut self, key: impl Into<String>) -> Self {
        self.abandon.push(key.into());
        self
    }
}

/// A saga type: pure, synchronous, no I/O, no clock.
pub trait Saga: Default + Clone + fmt::Debug + PartialEq {
    /// The events it reacts to.
    type Event: fmt::Debug;
    /// The commands it sends.
    type Command: fmt::Debug + Clone + PartialEq;

    /// Its name, as in topic names (`<context>.<name>.inbox`), command ids, metrics and the CLI.
    const NAME: &'static str;

    /// Its named deadlines and their default durations in ms (configuration may change them).
    const DEADLINES: &'static [(&'static str, i64)];

    /// The instance `event` belongs to (or starts), if any.
    fn saga_id(event: &Self::Event) -> Option<String>;

    /// What `input` does; `None`: nothing (the input is not for this state, e.g. a second start).
    fn react(&self, input: Input<'_, Self::Event>) -> Option<Reaction<Self, Self::Command>>;

    /// Where it is.
    fn status(&self) -> Status;

    /// The name of its current step (`reserve_stock`, `compensate_payment`, ...).
    fn step(&self) -> &'static str;
}

/// How a command with no reply is retried: after `initial_ms`, doubling up to `max_ms`, `max_attempts`
/// sends in all; then the saga is told [`Reply::NoAnswer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait for a reply before the first resend, ms.
    pub initial_ms: i64,
    /// Longest wait between sends, ms.
    pub max_ms: i64,
    /// Sends in all (the first included).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_ms: 5_000,
            max_ms: 60_000,
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// The wait after send number `attempt` (1 for the first).
    pub fn wait_after(&self, attempt: u32) -> i64 {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.max_ms)
            .max(1)
    }
}

/// The framework's settings for one saga type: the retry policy and each deadline's duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Retrying commands with no reply.
    pub retry: RetryPolicy,
    /// Deadline durations by name, ms; a name not here takes the saga's default.
    pub deadlines: Vec<(String, i64)>,
    /// Most history entries kept per instance (the first and the latest).
    pub max_history: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            deadlines: Vec::new(),
            max_history: 50,
        }
    }
}

impl Policy {
    /// The duration of deadline `name` of saga `S`, ms.
    pub fn deadline_ms<S: Saga>(&self, name: &str) -> i64 {
        self.deadlines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ms)| *ms)
            .or_else(|| S::DEADLINES.iter().find(|(n, _)| *n == name).map(|d| d.1))
            .unwrap_or(0)
    }
}

/// A command awaiting its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The request key.
    pub key: String,
    /// Its command id.
    pub command_id: String,
    /// Sends so far.
    pub attempts: u32,
    /// When it was first sent, ms.
    pub first_sent_at: i64,
    /// When it is sent again (or, after the last attempt, given up), ms.
    pub retry_at: i64,
    /// Where and what to resend: filled by the host once the command is encoded.
    pub sent: Sent,
}

/// An encoded command, as it was sent, for resending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// Its topic.
    pub topic: String,
    /// Its record key (the aggregate id).
    pub key: String,
    /// Its record value, in the wire format.
    pub payload: Vec<u8>,
}

/// A running deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Its name.
    pub name: String,
    /// When it fires, ms.
    pub at: i64,
}

/// One entry of an instance's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When, ms.
    pub at: i64,
    /// The step it led to.
    pub step: String,
    /// What happened (`started by OrderPlaced`, `reply to reserve/tea: rejected insufficient_stock`).
    pub what: String,
}

/// One saga instance with what the framework keeps beside the domain's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instance<S> {
    /// The domain's state.
    pub state: S,
    /// Commands awaiting a reply, in the order sent.
    pub pending: Vec<Pending>,
    /// Running deadlines.
    pub timers: Vec<Timer>,
    /// The first and the latest entries of its history.
    pub history: VecDeque<Entry>,
    /// When it started, ms (0: not started).
    pub started_at: i64,
    /// When its current step began, ms.
    pub step_since: i64,
    /// When it last changed, ms.
    pub updated_at: i64,
    /// Deadlines fired so far (each at most once: a fired deadline is gone from `timers`).
    pub deadlines_fired: u32,
}

/// What the framework tells an instance.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a, E> {
    /// A routed event, with its record name for the history.
    Event {
        /// The event.
        event: &'a E,
        /// Its name (`OrderPlaced`).
        name: &'a str,
    },
    /// The result of command `command_id`.
    Result {
        /// The command id.
        command_id: &'a str,
        /// Its answer (never [`Reply::NoAnswer`]).
        reply: Reply<'a>,
    },
    /// Time passed: fire what is due.
    Tick,
}

/// A command to send, with its ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound<C> {
    /// The request key.
    pub key: String,
    /// The command id (`<saga>/<saga id>/<key>`).
    pub command_id: String,
    /// The command.
    pub command: C,
}

/// What one incoming input did to an instance: the instance after it and what to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition<S: Saga> {
    /// The instance after it.
    pub instance: Instance<S>,
    /// New commands to send (their [`Pending::sent`] is filled by the host with [`Transition::sent`]).
    pub send: Vec<Outbound<S::Command>>,
    /// Awaited commands to send again, as they were sent.
    pub resend: Vec<Sent>,
    /// Deadlines that fired.
    pub fired: Vec<String>,
    /// The step before, and how long it lasted (ms), when the step changed.
    pub left_step: Option<(String, i64)>,
}

impl<S: Saga> Transition<S> {
    /// Record how the `i`-th new command was sent, so that it can be sent again.
    pub fn sent(&mut self, i: usize, sent: Sent) {
        let Some(out) = self.send.get(i) else { return };
        if let Some(p) = self
            .instance
            .pending
            .iter_mut()
            .find(|p| p.command_id == out.command_id)
        {
            p.sent = sent;
        }
    }
}

/// The command id of request `key` of instance `saga_id` of saga `S`.
pub fn command_id<S: Saga>(saga_id: &str, key: &str) -> String {
    format!("{}/{saga_id}/{key}", S::NAME)
}

/// The prefix every command id of saga `S` starts with.
pub fn command_id_prefix<S: Saga>() -> String {
    format!("{}/", S::NAME)
}

impl<S: Saga> Instance<S> {
    /// Its status.
    pub fn status(&self) -> Status {
        self.state.status()
    }

    /// Started and not yet done: a terminal status with nothing awaited.
    pub fn is_open(&self) -> bool {
        self.started_at != 0 && !(self.status().is_terminal() && self.pending.is_empty())
    }

    /// The earliest time something is due (a deadline, or a retry), if any.
    pub fn next_due(&self) -> Option<i64> {
        let timers = self.timers.iter().map(|t| t.at);
        let retries = self.pending.iter().map(|p| p.retry_at);
        timers.chain(retries).min()
    }

    /// What `incoming` does to instance `saga_id` at `now`; `None`: nothing (a reply to a command no
    /// longer awaited, an event the saga ignores, a tick with nothing due).
    pub fn handle(
        &self,
        saga_id: &str,
        incoming: Incoming<'_, S::Event>,
        now: i64,
        policy: &Policy,
    ) -> Option<Transition<S>> {
        let mut next = self.clone();
        let mut t = Transition {
            instance: Self::default(),
            send: Vec::new(),
            resend: Vec::new(),
            fired: Vec::new(),
            left_step: None,
        };
        let step_before = self.state.step();
        let mut changed = false;
        match incoming {
            Incoming::Event { event, name } => {
                let reaction = self.state.react(Input::Event(event))?;
                if next.started_at == 0 {
                    next.started_at = now;
                    next.step_since = now;
                }
                next.react(saga_id, reaction, name, now, policy, &mut t);
                changed = true;
            }
            Incoming::Result { command_id, reply } => {
                let i = self
                    .pending
                    .iter()
                    .position(|p| p.command_id == command_id)?;
                let pending = next.pending.remove(i);
                next.input(
                    saga_id,
                    Input::Reply {
                        request: &pending.key,
                        reply,
                        sends: pending.attempts,
                    },
                    now,
                    policy,
                    &mut t,
                );
                changed = true;
            }
            Incoming::Tick => {
                // Deadlines first, earliest first; each fires once (it leaves `timers` as it fires).
                while let Some(i) = next
                    .timers
                    .iter()
                    .enumerate()
                    .filter(|(_, timer)| timer.at <= now)
                    .min_by_key(|(_, timer)| timer.at)
                    .map(|(i, _)| i)
                {
                    let timer = next.timers.remove(i);
                    next.deadlines_fired = next.deadlines_fired.saturating_add(1);
                    t.fired.push(timer.name.clone());
                    next.input(saga_id, Input::Deadline(&timer.name), now, policy, &mut t);
                    changed = true;
                }
                // Then the commands with no reply: sent again, or given up.
                let mut i = 0;
                while i < next.pending.len() {
                    if next.pending[i].retry_at > now {
                        i += 1;
                        continue;
                    }
                    changed = true;
                    if next.pending[i].attempts < policy.retry.max_attempts {
                        let p = &mut next.pending[i];
                        p.attempts += 1;
                        p.retry_at = now + policy.retry.wait_after(p.attempts);
                        t.resend.push(p.sent.clone());
                        i += 1;
                    } else {
                        let pending = next.pending.remove(i);
                        next.input(
                            saga_id,
                            Input::Reply {
                                request: &pending.key,
                                reply: Reply::NoAnswer,
                                sends: pending.attempts,
                            },
                            now,
                            policy,
                            &mut t,
                        );
                        // The reaction may have changed `pending`: start over.
                        i = 0;
                    }
                }
            }
        }
        if !changed {
            return None;
        }
        next.updated_at = now;
        let step_after = next.state.step();
        if step_after != step_before {
            t.left_step = Some((step_before.to_string(), now - next.step_since));
            next.step_since = now;
        }
        if next.status().is_terminal() {
            next.timers.clear();
        }
        t.instance = next;
        Some(t)
    }

    /// Apply the saga's reaction to `input` (none: the input is noted and changes nothing else).
    fn input(
        &mut self,
        saga_id: &str,
        input: Input<'_, S::Event>,
        now: i64,
        policy: &Policy,
        t: &mut Transition<S>,
    ) {
        let what = match input {
            Input::Event(_) => "event".to_string(),
            Input::Reply { request, reply, .. } => match reply {
                Reply::Accepted => format!("{request}: accepted"),
                Reply::Rejected { code, reason } => format!("{request}: rejected {code}: {reason}"),
                Reply::NoAnswer => format!("{request}: no answer"),
            },
            Input::Deadline(name) => format!("deadline {name} passed"),
        };
        match self.state.react(input) {
            Some(reaction) => self.react(saga_id, reaction, &what, now, policy, t),
            None => self.note(now, format!("{what} (ignored)"), policy),
        }
    }

    fn react(
        &mut self,
        saga_id: &str,
        reaction: Reaction<S, S::Command>,
        what: &str,
        now: i64,
        policy: &Policy,
        t: &mut Transition<S>,
    ) {
        let Reaction {
            state,
            send,
            start,
            clear,
            abandon,
        } = reaction;
        self.state = state;
        self.pending.retain(|p| !abandon.contains(&p.key));
        self.timers
            .retain(|timer| !clear.contains(&timer.name.as_str()));
        for name in start {
            self.timers.retain(|timer| timer.name != name);
            self.timers.push(Timer {
                name: name.to_string(),
                at: now.saturating_add(policy.deadline_ms::<S>(name)),
            });
        }
        for request in send {
            let command_id = command_id::<S>(saga_id, &request.key);
            if self.pending.iter().any(|p| p.command_id == command_id) {
                continue;
            }
            self.pending.push(Pending {
                key: request.key.clone(),
                command_id: command_id.clone(),
                attempts: 1,
                first_sent_at: now,
                retry_at: now + policy.retry.wait_after(1),
                sent: Sent::default(),
            });
            t.send.push(Outbound {
                key: request.key,
                command_id,
                command: request.command,
            });
        }
        self.note(now, what.to_string(), policy);
    }

    /// Add a history entry, keeping the first and the latest `max_history`.
    fn note(&mut self, now: i64, what: String, policy: &Policy) {
        self.history.push_back(Entry {
            at: now,
            step: self.state.step().to_string(),
            what,
        });
        let max = policy.max_history.max(2);
        while self.history.len() > max {
            // The first entry (how it started) stays.
            self.history.remove(1);
        }
    }
}
