//! The aggregates' [`AggregateContract`]s and the saga's [`SagaContract`]: which Avro record is which command or event, which field of a
//! command names its aggregate, and the changelog record of each state. This is what lets the aggregate
//! processor host them.

use apache_avro::types::Value;
use causeway_contracts::aggregate::{AggregateContract, ReadError};
use causeway_contracts::aggregate_contract;
use causeway_contracts::domain::Domain;
use causeway_contracts::saga::{CommandRecord, SagaContract, command_to};
use causeway_core::Aggregate;

use crate::contracts::inventory::*;
use crate::contracts::order::*;
use crate::contracts::payment::*;
use crate::fulfilment::{FulfilmentCommand, OrderFulfilment};
use crate::inventory::{Inventory, InventoryCommand, InventoryEvent};
use crate::order::{Order, OrderCommand, OrderEvent};
use crate::payment::{Account, PaymentCommand, PaymentEvent};

/// The domain as the services host it: `domain = "orders"` in their config.
pub fn domain() -> Domain {
    Domain::new(crate::CONTEXT, crate::TOPOLOGY)
        .aggregate::<Order>()
        .aggregate::<Inventory>()
        .aggregate::<Account>()
        .projection::<crate::projections::OrderById>()
        .projection::<crate::projections::StockBySku>()
        .projection::<crate::projections::AccountBalance>()
        .view("daily_sales", crate::projections::DAILY_SALES)
        .saga::<OrderFulfilment>()
}

impl SagaContract for OrderFulfilment {
    const STATE_RECORD: &'static str = "causeway.orders.fulfilment.OrderFulfilmentState";
    const SOURCES: &'static [&'static str] = &[Order::TYPE];
    const TARGETS: &'static [&'static str] = &[Order::TYPE, Inventory::TYPE, Account::TYPE];

    fn event(full_name: &str, value: &Value) -> Option<Result<OrderEvent, ReadError>> {
        match Order::event(full_name, value) {
            Err(ReadError::Unknown { .. }) => None,
            read => Some(read),
        }
    }

    fn command_record(
        command: FulfilmentCommand,
        command_id: String,
        correlation_id: String,
    ) -> Result<CommandRecord, String> {
        match command {
            FulfilmentCommand::Order(c) => command_to::<Order>(c, command_id, correlation_id),
            FulfilmentCommand::Inventory(c) => {
                command_to::<Inventory>(c, command_id, correlation_id)
            }
            FulfilmentCommand::Payment(c) => command_to::<Account>(c, command_id, correlation_id),
        }
    }
}

aggregate_contract! {
    Order, namespace "causeway.orders.order", state "OrderState", id order_id,
    commands OrderCommand {
        Place(PlaceOrder), Confirm(ConfirmOrder), Cancel(CancelOrder), Ship(ShipOrder),
    },
    events OrderEvent {
        Placed(OrderPlaced), Confirmed(OrderConfirmed), Cancelled(OrderCancelled), Shipped(OrderShipped),
    }
}

aggregate_contract! {
    Inventory, namespace "causeway.orders.inventory", state "InventoryState", id sku,
    commands InventoryCommand {
        Add(AddStock), Reserve(ReserveStock), Release(ReleaseReservation), Commit(CommitReservation),
    },
    events InventoryEvent {
        Added(StockAdded), Reserved(StockReserved), Released(ReservationReleased),
        Committed(ReservationCommitted),
    }
}

aggregate_contract! {
    Account, namespace "causeway.orders.payment", state "AccountState", id account_id,
    commands PaymentCommand {
        Open(OpenAccount), Deposit(Deposit), Authorize(AuthorizePayment), Capture(CapturePayment),
        Void(VoidPayment),
    },
    events PaymentEvent {
        Opened(AccountOpened), Deposited(FundsDeposited), Authorized(PaymentAuthorized),
        Captured(PaymentCaptured), Voided(PaymentVoided),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use causeway_contracts::aggregate::{AggregateContract, ReadError};
    use causeway_contracts::records::{EventMetadata, RecentCommand, StateRecord};

    use super::*;
    use crate::contracts::tests::{catalog, check};
    use crate::order::OrderStatus;

    fn record<S>(state: S) -> StateRecord<S> {
        StateRecord {
            aggregate_id: "a-1".into(),
            version: 3,
            state,
            recent_commands: vec![
                RecentCommand {
                    command_id: "c1".into(),
                    processed_at: 1,
                    new_version: Some(3),
                    ..RecentCommand::default()
                },
                RecentCommand {
                    command_id: "c2".into(),
                    processed_at: 2,
                    rejection_code: Some("conflict".into()),
                    reason: Some("stale".into()),
                    ..RecentCommand::default()
                },
            ],
            updated_at: 5,
        }
    }

    #[test]
    fn every_state_fits_its_changelog_record() {
        let catalog = catalog();
        let order = Order {
            status: OrderStatus::Confirmed,
            total_cents: 1999,
        };
        check(&catalog, Order::STATE_RECORD, &record(order));
        let stock = Inventory {
            available: 7,
            reservations: BTreeMap::from([("o-1".to_string(), 2), ("o-2".to_string(), 1)]),
        };
        check(&catalog, Inventory::STATE_RECORD, &record(stock));
        let account = Account {
            currency: Some("EUR".into()),
            balance_cents: 500,
            holds: BTreeMap::from([("p-1".to_string(), 200)]),
        };
        check(&catalog, Account::STATE_RECORD, &record(account));
        check(&catalog, Account::STATE_RECORD, &record(Account::default()));
    }

    #[test]
    fn commands_are_read_by_record_name_and_carry_their_envelope() {
        let place = PlaceOrder {
            command_id: "c-1".into(),
            expected_version: Some(0),
            order_id: "o-1".into(),
            ..PlaceOrder::default()
        };
        let value = apache_avro::to_value(&place).unwrap_or_else(|e| panic!("{e}"));
        let command = Order::command("causeway.orders.order.PlaceOrder", &value)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(command, OrderCommand::Place(place));
        let meta = Order::meta(&command);
        assert_eq!(
            (meta.command_id, meta.aggregate_id, meta.expected_version),
            ("c-1", "o-1", Some(0))
        );
        assert_eq!(meta.correlation_id, None);

        assert!(matches!(
            Order::command("causeway.orders.order.Refund", &value),
            Err(ReadError::Unknown {
                kind: "command",
                ..
            })
        ));
        assert!(
            matches!(
                Inventory::command("causeway.orders.order.PlaceOrder", &value),
                Err(ReadError::Unknown { .. })
            ),
            "another aggregate's command is unknown here"
        );
        assert!(matches!(
            Inventory::command("causeway.orders.inventory.AddStock", &value),
            Err(ReadError::Invalid { .. })
        ));
    }

    #[test]
    fn events_are_written_with_their_metadata_and_read_back() {
        let event = PaymentEvent::Deposited(FundsDeposited {
            account_id: "acc".into(),
            amount_cents: 5,
            ..FundsDeposited::default()
        });
        let metadata = EventMetadata {
            event_id: "e-1".into(),
            aggregate_version: 2,
            ..EventMetadata::default()
        };
        let (name, value) =
            Account::event_record(event, metadata.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(name, "causeway.orders.payment.FundsDeposited");
        let PaymentEvent::Deposited(back) =
            Account::event(name, &value).unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("read back as another event")
        };
        assert_eq!((back.metadata, back.amount_cents), (metadata, 5));
    }
}
