//! The orders aggregates as the processor hosts them (crates/contracts' `Host`), with no
//! infrastructure: decisions, all or nothing, restore, limits.

use apache_avro::types::Value;
use causeway_contracts::hosting::{DEAD_LETTERED, Host, Hosted, Limits, Stamp};
use causeway_contracts::records::{CommandOutcome, StateRecord};
use causeway_core::tracked::DedupWindow;
use causeway_orders::contracts::OrderLine;
use causeway_orders::contracts::order::{ConfirmOrder, PlaceOrder};
use causeway_orders::order::{Order, OrderStatus};

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

fn confirm(command_id: &str, order_id: &str) -> Value {
    apache_avro::to_value(ConfirmOrder {
        command_id: command_id.into(),
        order_id: order_id.into(),
        ..ConfirmOrder::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

const PLACE: &str = "causeway.orders.order.PlaceOrder";
const CONFIRM: &str = "causeway.orders.order.ConfirmOrder";
const AT: Stamp = Stamp {
    command_at_ms: 1_000,
    now_ms: 2_000,
};

fn host() -> Host<Order> {
    Host::new("orders", DedupWindow::default(), Limits::default())
}

fn state_of(value: Option<&Value>) -> StateRecord<Order> {
    apache_avro::from_value(value.unwrap_or_else(|| panic!("no state record")))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_command_gives_stamped_events_a_result_and_its_state_record() {
    let mut h = host();
    let d = h
        .decide(3, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].full_name, "causeway.orders.order.OrderPlaced");
    let placed: causeway_orders::contracts::order::OrderPlaced =
        apache_avro::from_value(&d.events[0].value().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    let m = placed.metadata;
    assert_eq!(
        (
            m.aggregate_id.as_str(),
            m.aggregate_version,
            m.causation_id.as_str()
        ),
        ("o-1", 1, "c-1")
    );
    assert_eq!((m.correlation_id.as_str(), m.occurred_at), ("c-1", 2_000));
    assert!(!m.event_id.is_empty());
    assert_eq!(
        (
            d.result
                .as_ref()
                .unwrap_or_else(|| panic!("no command result"))
                .outcome,
            d.result
                .as_ref()
                .unwrap_or_else(|| panic!("no command result"))
                .new_version
        ),
        (CommandOutcome::Accepted, Some(1))
    );
    assert!(!d.duplicate);
    let state = state_of(d.state.as_ref());
    assert_eq!(
        (state.version, state.state.status),
        (1, OrderStatus::Placed)
    );
    assert_eq!(state.recent_commands.len(), 1);
    h.commit();

    let again = h
        .decide(3, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(again.duplicate && again.events.is_empty() && again.state.is_none());
    assert_eq!(
        again
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("no command result"))
            .new_version,
        Some(1)
    );
}

#[test]
fn nothing_changes_until_commit() {
    let mut h = host();
    h.decide(0, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    h.discard();
    assert_eq!(h.states(), 0, "a discarded command leaves no state");
    let d = h
        .decide(0, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!d.duplicate, "a discarded command id is not remembered");
    h.commit();
    let confirmed = h
        .decide(0, Some(b"o-1"), CONFIRM, &confirm("c-2", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        confirmed
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("no command result"))
            .new_version,
        Some(2)
    );
    h.discard();
    let again = h
        .decide(0, Some(b"o-1"), CONFIRM, &confirm("c-3", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        again
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("no command result"))
            .new_version,
        Some(2),
        "the discarded confirmation did not move the version"
    );
}

#[test]
fn a_written_state_restores_to_the_same_decisions() {
    let mut h = host();
    let d = h
        .decide(0, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    h.commit();
    let written = d.state.unwrap_or_else(|| panic!("no state"));

    let mut restored = host();
    restored
        .restore(0, "o-1", Some(&written))
        .unwrap_or_else(|e| panic!("{e}"));
    let resent = restored
        .decide(0, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(resent.duplicate, "the command id survived the restore");
    let other = restored
        .decide(0, Some(b"o-1"), PLACE, &place("c-2", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        other
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("no command result"))
            .rejection_code
            .as_deref(),
        Some("already_placed"),
        "the state survived the restore"
    );
    restored
        .restore(0, "o-1", None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(restored.states(), 0, "a tombstone removes the state");
}

#[test]
fn a_rejection_for_an_aggregate_that_does_not_exist_leaves_no_state() {
    let mut h = host();
    let d = h
        .decide(0, Some(b"o-9"), CONFIRM, &confirm("c-1", "o-9"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        d.result
            .as_ref()
            .unwrap_or_else(|| panic!("no command result"))
            .outcome,
        CommandOutcome::Rejected
    );
    assert!(d.state.is_none(), "no state record to write");
    h.commit();
    assert_eq!(h.states(), 0);
}

#[test]
fn poison_is_named_changes_nothing_and_carries_the_ids_it_could_read() {
    let mut h = host();
    h.decide(0, Some(b"o-1"), PLACE, &place("c-0", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    h.commit();
    let unknown = h
        .decide(
            0,
            Some(b"o-1"),
            "causeway.orders.order.Refund",
            &place("c", "o-1"),
            AT,
            true,
        )
        .err()
        .unwrap_or_else(|| panic!("accepted an unknown record"));
    assert!(unknown.reason.contains("is not a command"));
    assert_eq!(
        unknown.command.map(|c| (c.command_id, c.aggregate_id)),
        Some(("c".to_string(), "o-1".to_string())),
        "the command id of an unknown record type is still read"
    );
    let wrong_key = h
        .decide(0, Some(b"o-2"), PLACE, &place("c", "o-1"), AT, true)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(
        wrong_key
            .reason
            .contains("is not the command's aggregate id")
    );
    assert!(wrong_key.command.is_some());
    let no_key = h.decide(0, None, PLACE, &place("c", "o-1"), AT, true);
    assert!(no_key.is_err_and(|e| e.reason.contains("no key")));
    let no_id = h
        .decide(0, Some(b"o-1"), PLACE, &place("", "o-1"), AT, true)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(no_id.reason.contains("empty command_id") && no_id.command.is_none());
    h.commit();
    let next = h
        .decide(0, Some(b"o-1"), CONFIRM, &confirm("c-9", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        next.result
            .as_ref()
            .unwrap_or_else(|| panic!("no command result"))
            .new_version,
        Some(2),
        "the poison left the placed order at version 1"
    );
    let resent = h
        .decide(0, Some(b"o-2"), PLACE, &place("c", "o-2"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!resent.duplicate, "no poison command id was remembered");
}

#[test]
fn ids_over_the_limit_are_poison_and_reasons_are_cut() {
    let mut h = host();
    let long = "x".repeat(1_000_000);
    let long_command = h
        .decide(0, Some(b"o-1"), PLACE, &place(&long, "o-1"), AT, true)
        .err()
        .unwrap_or_else(|| panic!("accepted a 1 MB command id"));
    assert!(
        long_command
            .reason
            .contains("command_id is 1000000 bytes; at most 256")
    );
    assert!(
        long_command.command.is_none(),
        "no result can carry that id"
    );
    let long_aggregate = h
        .decide(
            0,
            Some(long.as_bytes()),
            PLACE,
            &place("c-1", &long),
            AT,
            true,
        )
        .err()
        .unwrap_or_else(|| panic!("accepted a 1 MB aggregate id"));
    assert!(
        long_aggregate
            .reason
            .contains("aggregate id is 1000000 bytes")
    );
    let command = long_aggregate
        .command
        .unwrap_or_else(|| panic!("the command id is readable"));
    assert_eq!(command.aggregate_id.len(), 256, "cut to the limit");
    let result = command.dead_lettered("order", &"why ".repeat(1000), Limits::default(), 5);
    assert_eq!(result.rejection_code.as_deref(), Some(DEAD_LETTERED));
    assert!(result.reason.is_some_and(|r| r.len() <= 1024));
}

#[test]
fn a_timestamp_in_the_future_does_not_empty_the_window() {
    let mut h = host();
    h.decide(0, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    h.commit();
    let future = Stamp {
        command_at_ms: i64::MAX / 2,
        now_ms: 3_000,
    };
    h.decide(
        0,
        Some(b"o-1"),
        CONFIRM,
        &confirm("c-2", "o-1"),
        future,
        true,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    h.commit();
    let resent = h
        .decide(0, Some(b"o-1"), PLACE, &place("c-1", "o-1"), AT, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        resent.duplicate,
        "c-1 is still remembered after a command stamped far in the future"
    );
}

#[test]
fn dropping_a_partition_forgets_its_states_only() {
    let mut h = host();
    for (p, id) in [(0, "a"), (1, "b")] {
        h.decide(
            p,
            Some(id.as_bytes()),
            PLACE,
            &place(&format!("c-{id}"), id),
            AT,
            true,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        h.commit();
    }
    h.drop_partition(0);
    assert_eq!(h.states(), 1);
}
