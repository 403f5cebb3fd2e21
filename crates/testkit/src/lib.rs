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
//! Projections the same way, from events to the document they lead to:
//!
//! ```text
//! projected::<StockBySku>([stock_added("tea", 5), reserved("tea", "o-1", 2)])
//!     .then_fields([("available", "3"), ("reserved", "2")]);
//! ```
#![forbid(unsafe_code)]

use causeway_core::projection::{Document, EventInfo, Projection};
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
