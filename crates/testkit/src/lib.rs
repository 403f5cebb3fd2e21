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
#![forbid(unsafe_code)]

use causeway_core::{Aggregate, Rejection};

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
