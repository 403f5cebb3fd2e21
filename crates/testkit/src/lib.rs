//! Given/when/then fixtures for aggregates, with no infrastructure:
//!
//! ```text
//! given::<Inventory>([stock_added("tea", 5)])
//!     .when(reserve("tea", "o-1", 7))
//!     .then_rejected("insufficient_stock");
//! ```
//!
//! `then` also checks that applying the produced events to the state does not panic, and `then_state`
//! checks the state they lead to.
//!
//! Sagas with time under the test's control ([`saga`]): events and replies in, commands out,
//! deadlines and retries fired as the test's clock moves.
//!
//! Projections the same way, from events to the document they lead to:
//!
//! ```text
//! projected::<StockBySku>([stock_added("tea", 5), reserved("tea", "o-1", 2)])
//!     .then_fields([("available", "3"), ("reserved", "2")]);
//! ```
#![forbid(unsafe_code)]

use causeway_core::projection::{Document, EventInfo, Projection};
use causeway_core::saga::{Incoming, Instance, Policy, Reply, Saga, Status};
use causeway_core::{Aggregate, Rejection};

/// The document of one aggregate after `events` (versions 1, 2, ...; event `n` at `n` seconds past
/// the epoch), each projected by `P` and applied as a projector applies it. Panics, naming the event,
/// when the projection refuses one.
#[track_caller]
pub fn projected<P: Projection>(
    events: impl IntoIterator<Item = <P::Aggregate as Aggregate>::Event>,
) -> Projected {
    let projection = P::default();
    let mut document = Document::default();
    for (i, event) in events.into_iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX - 1) + 1;
        let info = EventInfo {
            aggregate_id: "id",
            version,
            occurred_at_ms: version * 1000,
        };
        match projection.project(&event, &info) {
            Ok(change) => {
                let names = change.set.iter().map(|(n, _)| n);
                for name in names.chain(change.add.iter().map(|(n, _)| n)) {
                    assert!(
                        P::FIELDS.contains(name),
                        "{} changes field {name}, which is not in its FIELDS",
                        P::NAME
                    );
                }
                document.apply(&info, &change);
            }
            Err(why) => panic!("{} refused {event:?}: {why}", P::NAME),
        }
    }
    Projected { document }
}

/// A document built by [`projected`].
#[derive(Debug)]
pub struct Projected {
    document: Document,
}

impl Projected {
    /// Assert each of `expected` (field, value as text) is in the document; returns it.
    #[track_caller]
    pub fn then_fields<'a>(
        self,
        expected: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Document {
        for (name, value) in expected {
            assert_eq!(
                self.document.field(name),
                Some(value),
                "field {name} of {:?}",
                self.document
            );
        }
        self.document
    }

    /// The document.
    pub fn document(&self) -> &Document {
        &self.document
    }
}

/// A state built from past events.
#[derive(Debug)]
pub struct Given<A: Aggregate> {
    state: A,
}

/// Start from the state `events` lead to.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let events: Vec<A::Event> = events.into_iter().collect();
    Given {
        state: A::replay(&events),
    }
}

impl<A: Aggregate> Given<A> {
    /// Handle `command` in this state.
    pub fn when(self, command: A::Command) -> When<A> {
        let outcome = self.state.handle(&command);
        When {
            state: self.state,
            command,
            outcome,
        }
    }

    /// The state itself.
    pub fn state(&self) -> &A {
        &self.state
    }
}

/// What a command did.
#[derive(Debug)]
pub struct When<A: Aggregate> {
    state: A,
    command: A::Command,
    outcome: Result<Vec<A::Event>, Rejection>,
}

impl<A: Aggregate> When<A> {
    /// Assert the command recorded exactly `expected`; returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => {
                assert_eq!(events, expected, "events of {:?}", self.command);
                events.iter().fold(self.state, A::apply)
            }
            Err(rejection) => panic!(
                "{:?} was rejected ({rejection}); expected {expected:?}",
                self.command
            ),
        }
    }

    /// Assert the command was rejected with `code`.
    #[track_caller]
    pub fn then_rejected(self, code: &str) -> Rejection {
        match self.outcome {
            Err(rejection) if rejection.code == code => rejection,
            Err(rejection) => panic!(
                "{:?} was rejected with {rejection}, not {code}",
                self.command
            ),
            Ok(events) => panic!(
                "{:?} was accepted with {events:?}; expected rejection {code}",
                self.command
            ),
        }
    }
}

/// Given/when/then for a saga instance, with time under the test's control:
///
/// ```text
/// let mut s = saga::<OrderFulfilment>("o-1");
/// s.when_event(placed(...)).then_sends([("reserve/tea", reserve("tea", 2))]);
/// s.when_rejected("reserve/tea", "insufficient_stock").then_sends([("cancel", cancel(...))]);
/// s.when_time_passes(60_000).then_sends([]);
/// assert_eq!(s.status(), Status::Compensated);
/// ```
///
/// The clock starts at 1 s past the epoch; the framework's [`Policy`] (retries, deadline durations) is
/// the default unless [`SagaTest::with_policy`] says otherwise.
pub fn saga<S: Saga>(saga_id: &str) -> SagaTest<S> {
    SagaTest {
        saga_id: saga_id.to_string(),
        instance: Instance::default(),
        now: 1_000,
        policy: Policy::default(),
        last: None,
        fired: Vec::new(),
        resent: 0,
    }
}

/// A saga instance under test ([`saga`]).
#[derive(Debug)]
pub struct SagaTest<S: Saga> {
    saga_id: String,
    instance: Instance<S>,
    now: i64,
    policy: Policy,
    /// The commands the last input sent, by request key; `None`: it changed nothing.
    last: Option<Vec<(String, S::Command)>>,
    fired: Vec<String>,
    resent: usize,
}

impl<S: Saga> SagaTest<S> {
    /// With `policy` instead of the default.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    fn handle(&mut self, incoming: Incoming<'_, S::Event>) -> &mut Self {
        match self
            .instance
            .handle(&self.saga_id, incoming, self.now, &self.policy)
        {
            Some(t) => {
                self.instance = t.instance;
                self.fired.extend(t.fired);
                self.resent = t.resend.len();
                self.last = Some(t.send.into_iter().map(|o| (o.key, o.command)).collect());
            }
            None => {
                self.last = None;
                self.resent = 0;
            }
        }
        self
    }

    #[track_caller]
    fn command_id(&self, key: &str) -> String {
        match self.instance.pending.iter().find(|p| p.key == key) {
            Some(p) => p.command_id.clone(),
            None => panic!("{key} is not awaited; awaited: {:?}", self.awaiting()),
        }
    }

    /// `event` arrives.
    pub fn when_event(&mut self, event: S::Event) -> &mut Self {
        self.handle(Incoming::Event {
            event: &event,
            name: "event",
        })
    }

    /// The command sent under `key` is accepted.
    #[track_caller]
    pub fn when_accepted(&mut self, key: &str) -> &mut Self {
        let id = self.command_id(key);
        self.handle(Incoming::Result {
            command_id: &id,
            reply: Reply::Accepted,
        })
    }

    /// The command sent under `key` is rejected with `code`.
    #[track_caller]
    pub fn when_rejected(&mut self, key: &str, code: &str) -> &mut Self {
        let id = self.command_id(key);
        self.handle(Incoming::Result {
            command_id: &id,
            reply: Reply::Rejected {
                code,
                reason: "rejected in a test",
            },
        })
    }

    /// A result for command id `command_id` arrives (e.g. one no longer awaited).
    pub fn when_result_for(&mut self, command_id: &str) -> &mut Self {
        self.handle(Incoming::Result {
            command_id,
            reply: Reply::Accepted,
        })
    }

    /// `ms` pass; what is due fires, at the time it is due (a wait of minutes sends again and gives up
    /// as often as the retry policy says, in order, and a deadline fires when it is due among them).
    /// The commands sent over the whole wait are what [`SagaTest::then_sends`] sees.
    pub fn when_time_passes(&mut self, ms: i64) -> &mut Self {
        let target = self.now.saturating_add(ms);
        let (mut sent, mut resent, mut changed) = (Vec::new(), 0, false);
        for _ in 0..1_000_000 {
            let Some(due) = self.instance.next_due().filter(|at| *at <= target) else {
                break;
            };
            self.now = due.max(self.now);
            match self
                .instance
                .handle(&self.saga_id, Incoming::Tick, self.now, &self.policy)
            {
                Some(t) => {
                    changed = true;
                    self.instance = t.instance;
                    self.fired.extend(t.fired);
                    resent += t.resend.len();
                    sent.extend(t.send.into_iter().map(|o| (o.key, o.command)));
                }
                None => break,
            }
        }
        self.now = target;
        self.resent = resent;
        self.last = changed.then_some(sent);
        self
    }

    /// Assert the last input sent exactly `expected` (request key, command), in order.
    #[track_caller]
    pub fn then_sends<'a>(
        &mut self,
        expected: impl IntoIterator<Item = (&'a str, S::Command)>,
    ) -> &mut Self {
        let expected: Vec<(String, S::Command)> = expected
            .into_iter()
            .map(|(k, c)| (k.to_string(), c))
            .collect();
        match &self.last {
            Some(sent) => assert_eq!(sent, &expected, "commands sent"),
            None => panic!("the input changed nothing; expected {expected:?}"),
        }
        self
    }

    /// Assert the last input changed nothing at all.
    #[track_caller]
    pub fn then_ignored(&mut self) -> &mut Self {
        assert!(self.last.is_none(), "expected nothing, got {:?}", self.last);
        self
    }

    /// Assert the instance is in `status` at step `step`.
    #[track_caller]
    pub fn then_at(&mut self, status: Status, step: &str) -> &mut Self {
        assert_eq!(
            (self.instance.status(), self.instance.state.step()),
            (status, step),
            "{:?}",
            self.instance.state
        );
        self
    }

    /// The request keys awaiting a reply, in the order sent.
    pub fn awaiting(&self) -> Vec<&str> {
        self.instance
            .pending
            .iter()
            .map(|p| p.key.as_str())
            .collect()
    }

    /// The deadlines fired so far, in order.
    pub fn fired(&self) -> &[String] {
        &self.fired
    }

    /// How many commands the last input (or wait) sent again.
    pub fn resent(&self) -> usize {
        self.resent
    }

    /// The instance.
    pub fn instance(&self) -> &Instance<S> {
        &self.instance
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.instance.status()
    }

    /// The test's clock, ms.
    pub fn now(&self) -> i64 {
        self.now
    }
}
