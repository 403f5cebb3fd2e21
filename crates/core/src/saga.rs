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
    /// The duration of deadline `name` of saga `S`, ms; `None` when the saga does not declare it.
    pub fn deadline_ms<S: Saga>(&self, name: &str) -> Option<i64> {
        let default = S::DEADLINES.iter().find(|(n, _)| *n == name)?.1;
        let ms = self
            .deadlines
            .iter()
            .find(|(n, _)| n == name)
            .map_or(default, |(_, ms)| *ms);
        Some(ms.max(1))
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
    /// While the saga reacts to a give-up: the command given up, so that sending it again under the
    /// same key goes on counting its sends (never kept).
    given_up: Option<Pending>,
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

/// How an input appears in the history.
fn describe<E>(input: &Input<'_, E>) -> String {
    match input {
        Input::Event(_) => "event".to_string(),
        Input::Reply { request, reply, .. } => match reply {
            Reply::Accepted => format!("{request}: accepted"),
            Reply::Rejected { code, reason } => format!("{request}: rejected {code}: {reason}"),
            Reply::NoAnswer => format!("{request}: no answer"),
        },
        Input::Deadline(name) => format!("deadline {name} passed"),
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
                let pending = &self.pending[i];
                let input = Input::Reply {
                    request: &pending.key,
                    reply,
                    sends: pending.attempts,
                };
                // A reply the saga does not take leaves the command awaited (retried, then given up).
                let what = describe(&input);
                let reaction = self.state.react(input)?;
                next.pending.remove(i);
                next.react(saga_id, reaction, &what, now, policy, &mut t);
                changed = true;
            }
            Incoming::Tick => {
                // The deadlines due now, earliest first, each fired once: it leaves `timers` as it
                // fires, and one started by a reaction fires at the next tick at the earliest.
                let mut due: Vec<(i64, String)> = next
                    .timers
                    .iter()
                    .filter(|timer| timer.at <= now)
                    .map(|timer| (timer.at, timer.name.clone()))
                    .collect();
                due.sort();
                for (at, name) in due {
                    let Some(i) = next
                        .timers
                        .iter()
                        .position(|timer| timer.name == name && timer.at == at)
                    else {
                        // Cleared by an earlier deadline's reaction.
                        continue;
                    };
                    next.timers.remove(i);
                    next.deadlines_fired = next.deadlines_fired.saturating_add(1);
                    t.fired.push(name.clone());
                    next.input(saga_id, Input::Deadline(&name), now, policy, &mut t);
                    changed = true;
                }
                // Then the commands with no reply due now: sent again, or given up. A command sent
                // again under the same key by the reaction to its give-up is not due before its wait.
                let due: Vec<String> = next
                    .pending
                    .iter()
                    .filter(|p| p.retry_at <= now)
                    .map(|p| p.command_id.clone())
                    .collect();
                for command_id in due {
                    let Some(i) = next
                        .pending
                        .iter()
                        .position(|p| p.command_id == command_id && p.retry_at <= now)
                    else {
                        continue;
                    };
                    changed = true;
                    if next.pending[i].attempts < policy.retry.max_attempts {
                        let p = &mut next.pending[i];
                        p.attempts = p.attempts.saturating_add(1);
                        p.retry_at = now.saturating_add(policy.retry.wait_after(p.attempts));
                        t.resend.push(p.sent.clone());
                    } else {
                        let pending = next.pending.remove(i);
                        next.given_up = Some(pending.clone());
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
                        next.given_up = None;
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
        let what = describe(&input);
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
        let mut what = what.to_string();
        for name in start {
            self.timers.retain(|timer| timer.name != name);
            let Some(ms) = policy.deadline_ms::<S>(name) else {
                // A deadline the saga does not declare has no duration: not started, and said so.
                what.push_str(&format!(" (deadline {name} is not declared; not started)"));
                continue;
            };
            self.timers.push(Timer {
                name: name.to_string(),
                at: now.saturating_add(ms),
            });
        }
        for request in send {
            let command_id = command_id::<S>(saga_id, &request.key);
            if self.pending.iter().any(|p| p.command_id == command_id) {
                continue;
            }
            // Sent again after a give-up: the same command, its sends go on counting.
            let (attempts, first_sent_at) = match &self.given_up {
                Some(g) if g.command_id == command_id => {
                    (g.attempts.saturating_add(1), g.first_sent_at)
                }
                _ => (1, now),
            };
            self.pending.push(Pending {
                key: request.key.clone(),
                command_id: command_id.clone(),
                attempts,
                first_sent_at,
                retry_at: now.saturating_add(policy.retry.wait_after(attempts)),
                sent: Sent::default(),
            });
            t.send.push(Outbound {
                key: request.key,
                command_id,
                command: request.command,
            });
        }
        self.note(now, what, policy);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `a` on start; ignores the first reply to it; on a give-up sends it again; restarts its
    /// deadline `tick` each time it passes; asks for a deadline it does not declare.
    #[derive(Debug, Clone, Default, PartialEq)]
    struct Toy {
        replies_seen: u32,
        ticks: u32,
        done: bool,
    }

    impl Saga for Toy {
        type Event = ();
        type Command = &'static str;
        const NAME: &'static str = "toy";
        const DEADLINES: &'static [(&'static str, i64)] = &[("tick", 1_000)];

        fn saga_id(_: &()) -> Option<String> {
            Some("t".into())
        }

        fn react(&self, input: Input<'_, ()>) -> Option<Reaction<Self, &'static str>> {
            let mut next = self.clone();
            match input {
                Input::Event(()) => Some(
                    Reaction::to(next)
                        .send("a", "do a")
                        .start("tick")
                        .start("undeclared"),
                ),
                Input::Reply {
                    reply: Reply::NoAnswer,
                    ..
                } => Some(Reaction::to(next).send("a", "do a")),
                Input::Reply { .. } if self.replies_seen == 0 => None,
                Input::Reply { .. } => {
                    next.done = true;
                    Some(Reaction::to(next).clear("tick"))
                }
                Input::Deadline(_) => {
                    next.ticks += 1;
                    Some(Reaction::to(next).start("tick"))
                }
            }
        }

        fn status(&self) -> Status {
            if self.done {
                Status::Completed
            } else {
                Status::Running
            }
        }

        fn step(&self) -> &'static str {
            "toy"
        }
    }

    fn policy() -> Policy {
        Policy {
            retry: RetryPolicy {
                initial_ms: 500,
                max_ms: 500,
                max_attempts: 2,
            },
            ..Policy::default()
        }
    }

    fn started() -> Instance<Toy> {
        let t = Instance::<Toy>::default()
            .handle(
                "t",
                Incoming::Event {
                    event: &(),
                    name: "Go",
                },
                0,
                &policy(),
            )
            .unwrap_or_else(|| panic!("not started"));
        t.instance
    }

    #[test]
    fn an_undeclared_deadline_is_not_started_and_the_history_says_so() {
        let i = started();
        assert_eq!(i.timers.len(), 1, "{:?}", i.timers);
        assert!(
            i.history[0]
                .what
                .contains("deadline undeclared is not declared")
        );
    }

    #[test]
    fn a_reply_the_saga_does_not_take_leaves_the_command_awaited() {
        let i = started();
        let id = command_id::<Toy>("t", "a");
        let reply = Incoming::Result {
            command_id: &id,
            reply: Reply::Accepted,
        };
        assert!(i.handle("t", reply, 10, &policy()).is_none());
        assert_eq!(i.pending.len(), 1);
    }

    #[test]
    fn a_deadline_restarted_by_its_own_reaction_fires_at_the_next_tick() {
        let i = started();
        let t = i
            .handle("t", Incoming::Tick, 10_000, &policy())
            .unwrap_or_else(|| panic!("nothing due"));
        assert_eq!(t.fired, ["tick"]);
        assert_eq!(t.instance.state.ticks, 1);
        assert_eq!(t.instance.timers[0].at, 11_000);
    }

    #[test]
    fn a_command_sent_again_after_a_give_up_goes_on_counting_its_sends() {
        let i = started();
        let p = policy();
        // Resent at 500 (2 sends), given up at 1000 and sent again under the same key: 3 sends.
        let i = i
            .handle("t", Incoming::Tick, 500, &p)
            .unwrap_or_else(|| panic!("nothing due"))
            .instance;
        assert_eq!(i.pending[0].attempts, 2);
        assert!(i.handle("t", Incoming::Tick, 999, &p).is_none());
        let t = i
            .handle("t", Incoming::Tick, 1_000, &p)
            .unwrap_or_else(|| panic!("nothing due"));
        assert_eq!(t.instance.pending[0].attempts, 3);
        assert_eq!(t.instance.pending[0].first_sent_at, 0);
        assert_eq!(t.instance.pending[0].retry_at, 1_500);
        assert_eq!(t.send.len(), 1, "sent again");
    }
}
