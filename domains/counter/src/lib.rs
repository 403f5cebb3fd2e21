//! The counter domain: one aggregate, a counter that amounts are added to. It is the second domain of
//! the build, small enough to read in one sitting, and it proves that the services host any domain
//! through its one registration point ([`domain`]) with no change to services/ or crates/kafka.
//!
//! Its handler has a deliberate flaw the tests lean on: an amount that takes the counter past `i64`'s
//! range panics (the arithmetic a hurried author writes). The processor dead-letters such a command
//! with a result and goes on.
//!
//! # Layout
//! - [`TOPOLOGY`]: its topics (`topology.toml`).
//! - [`contracts`]: the records of `avro/counter/` as Rust types.
//! - [`Counter`]: the aggregate, pure.
//! - [`domain`]: the registration the services host.
#![forbid(unsafe_code)]

use causeway_contracts::aggregate_contract;
use causeway_contracts::domain::Domain;
use causeway_core::{Aggregate, Rejection};
use serde::{Deserialize, Serialize};

use contracts::{AddToCounter, CounterAdded};

/// The domain's topology file, as text.
pub const TOPOLOGY: &str = include_str!("../topology.toml");

/// The bounded context: the first segment of every topic of this domain.
pub const CONTEXT: &str = "counter";

/// The records of `avro/counter/counter/`, field for field.
pub mod contracts {
    use causeway_contracts::records::EventMetadata;
    use serde::{Deserialize, Serialize};

    /// Add an amount to a counter.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct AddToCounter {
        /// Unique id of this command, chosen by the sender.
        pub command_id: String,
        /// The aggregate version the sender saw; null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow; null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command; null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The counter (aggregate id).
        pub counter_id: String,
        /// What to add; not zero.
        pub amount: i64,
    }

    /// An amount was added to a counter.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct CounterAdded {
        /// Who, when and why.
        pub metadata: EventMetadata,
        /// The counter (aggregate id).
        pub counter_id: String,
        /// The amount added.
        pub amount: i64,
    }
}

/// A counter's state: the sum of every amount added.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    /// The sum so far.
    pub value: i64,
}

/// The counter's commands.
#[derive(Debug, Clone, PartialEq)]
pub enum CounterCommand {
    /// Add an amount.
    Add(AddToCounter),
}

/// The counter's events.
#[derive(Debug, Clone, PartialEq)]
pub enum CounterEvent {
    /// An amount was added.
    Added(CounterAdded),
}

impl Aggregate for Counter {
    type Command = CounterCommand;
    type Event = CounterEvent;
    const TYPE: &'static str = "counter";

    fn handle(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, Rejection> {
        let CounterCommand::Add(add) = command;
        if add.amount == 0 {
            return Err(Rejection::new("zero_amount", "adding zero changes nothing"));
        }
        // The deliberate flaw (see the crate doc): no overflow check before adding.
        if self.value.checked_add(add.amount).is_none() {
            panic!("counter {} overflows", add.counter_id);
        }
        Ok(vec![CounterEvent::Added(CounterAdded {
            counter_id: add.counter_id.clone(),
            amount: add.amount,
            ..CounterAdded::default()
        })])
    }

    fn apply(self, event: &CounterEvent) -> Self {
        let CounterEvent::Added(added) = event;
        Counter {
            value: self.value.saturating_add(added.amount),
        }
    }
}

aggregate_contract! {
    Counter, namespace "causeway.counter.counter", state "CounterState", id counter_id,
    commands CounterCommand { Add(AddToCounter), },
    events CounterEvent { Added(CounterAdded), }
}

/// The domain as the services host it: `domain = "counter"` in their config.
pub fn domain() -> Domain {
    Domain::new(CONTEXT, TOPOLOGY).aggregate::<Counter>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_testkit::given;

    fn add(amount: i64) -> CounterCommand {
        CounterCommand::Add(AddToCounter {
            command_id: "c".into(),
            counter_id: "k".into(),
            amount,
            ..AddToCounter::default()
        })
    }

    fn added(amount: i64) -> CounterEvent {
        CounterEvent::Added(CounterAdded {
            counter_id: "k".into(),
            amount,
            ..CounterAdded::default()
        })
    }

    #[test]
    fn amounts_add_up_and_zero_is_refused() {
        let state = given::<Counter>([added(2)]).when(add(3)).then([added(3)]);
        assert_eq!(state.value, 5);
        given::<Counter>([])
            .when(add(0))
            .then_rejected("zero_amount");
    }

    #[test]
    fn past_the_range_the_handler_panics() {
        let outcome = std::panic::catch_unwind(|| Counter { value: i64::MAX }.handle(&add(1)));
        assert!(outcome.is_err(), "the deliberate flaw is there");
    }
}

#[cfg(test)]
mod hosted {
    use causeway_contracts::hosting::{Host, Hosted, Limits, Stamp};
    use causeway_core::tracked::DedupWindow;

    use super::*;

    const ADD: &str = "causeway.counter.counter.AddToCounter";
    const AT: Stamp = Stamp {
        command_at_ms: 1,
        now_ms: 2,
    };

    fn add(command_id: &str, amount: i64) -> apache_avro::types::Value {
        apache_avro::to_value(AddToCounter {
            command_id: command_id.into(),
            counter_id: "k".into(),
            amount,
            ..AddToCounter::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_panicking_handler_is_poison_with_a_result_and_changes_nothing() {
        let mut h = Host::<Counter>::new(CONTEXT, DedupWindow::default(), Limits::default());
        h.decide(0, Some(b"k"), ADD, &add("c-1", i64::MAX), AT, true)
            .unwrap_or_else(|e| panic!("{e:?}"));
        h.commit();
        let poison = h
            .decide(0, Some(b"k"), ADD, &add("c-2", 1), AT, true)
            .err()
            .unwrap_or_else(|| panic!("the overflow was accepted"));
        assert!(
            poison.reason.contains("handler panicked") && poison.reason.contains("overflows"),
            "{}",
            poison.reason
        );
        assert_eq!(poison.command.map(|c| c.command_id).as_deref(), Some("c-2"));
        let next = h
            .decide(0, Some(b"k"), ADD, &add("c-3", -1), AT, true)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            next.result
                .as_ref()
                .unwrap_or_else(|| panic!("no command result"))
                .new_version,
            Some(2),
            "the counter goes on"
        );
    }
}
