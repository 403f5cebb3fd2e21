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
    use causeway_contracts::hosting::{Dirty, Hosted};
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

    /// What the prepared writer writes straight from a record equals what the value path (a `Value`
    /// tree, then the datum) writes.
    fn same_bytes<T: serde::Serialize>(
        catalog: &causeway_contracts::catalog::Catalog,
        name: &str,
        value: &T,
    ) {
        let writer = catalog.writer(name).unwrap_or_else(|e| panic!("{e}"));
        let mut written = Vec::new();
        writer
            .write(value, &mut written)
            .unwrap_or_else(|e| panic!("{e}"));
        let contract = catalog
            .records
            .iter()
            .find(|c| c.full_name == name)
            .unwrap_or_else(|| panic!("{name}"));
        let text = causeway_contracts::schema::inline_references(
            &contract.schema,
            &catalog.reference_texts(contract),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let schema = apache_avro::Schema::parse_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let tree = apache_avro::to_value(value).unwrap_or_else(|e| panic!("{e}"));
        #[allow(deprecated)]
        let datum = apache_avro::to_avro_datum(&schema, tree).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            &written[..5],
            &[0, 0, 0, 0, 0],
            "{name}: the wire format's header"
        );
        // The same datum; a map's entries may come in another order (the value path holds them in a
        // hash map), so the two are compared as read back, and by length.
        assert_eq!(written.len() - 5, datum.len(), "{name}");
        let mut reading = datum.as_slice();
        #[allow(deprecated)]
        let expected = apache_avro::from_avro_datum(&schema, &mut reading, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            writer.read(&written).unwrap_or_else(|e| panic!("{e}")),
            expected,
            "{name}"
        );
    }

    #[test]
    fn the_prepared_writer_writes_what_the_value_path_writes() {
        let catalog = catalog();
        let order = Order {
            status: OrderStatus::Confirmed,
            total_cents: 1999,
        };
        same_bytes(&catalog, Order::STATE_RECORD, &record(order));
        let stock = Inventory {
            available: 7,
            reservations: BTreeMap::from([("o-1".to_string(), 2), ("o-2".to_string(), 1)]),
        };
        same_bytes(&catalog, Inventory::STATE_RECORD, &record(stock));
        let reserved = StockReserved {
            metadata: EventMetadata {
                event_id: "e-1".into(),
                aggregate_id: "tea".into(),
                aggregate_version: 4,
                causation_id: "c-1".into(),
                correlation_id: "o-1".into(),
                occurred_at: 1_700_000_000_000,
                schema_version: 1,
            },
            sku: "tea".into(),
            order_id: "o-1".into(),
            quantity: 2,
            available: 5,
        };
        same_bytes(
            &catalog,
            "causeway.orders.inventory.StockReserved",
            &reserved,
        );
        for result in [
            causeway_contracts::records::CommandResult {
                command_id: "c-1".into(),
                correlation_id: "o-1".into(),
                aggregate_type: "inventory".into(),
                aggregate_id: "tea".into(),
                outcome: causeway_contracts::records::CommandOutcome::Accepted,
                new_version: Some(4),
                rejection_code: None,
                reason: None,
                processed_at: 9,
            },
            causeway_contracts::records::CommandResult {
                command_id: "c-2".into(),
                correlation_id: "c-2".into(),
                aggregate_type: "inventory".into(),
                aggregate_id: "tea".into(),
                outcome: causeway_contracts::records::CommandOutcome::Rejected,
                new_version: None,
                rejection_code: Some("insufficient_stock".into()),
                reason: Some("2 units of tea requested, 1 available".into()),
                processed_at: 10,
            },
        ] {
            same_bytes(&catalog, "causeway.CommandResult", &result);
        }
    }

    /// The writer of `host`'s changelog record, from the contracts.
    pub(super) fn state_writer(host: &dyn Hosted) -> causeway_contracts::wire::Writer {
        catalog()
            .writer(host.state_record())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The one state record `host` has to write at `now_ms`: its bytes, and read back.
    pub(super) fn the_written_state(
        host: &mut dyn Hosted,
        writer: &causeway_contracts::wire::Writer,
        now_ms: i64,
    ) -> (Vec<u8>, Value) {
        let mut dirty: Vec<Dirty> = Vec::new();
        host.take_dirty(now_ms, writer, &mut dirty)
            .unwrap_or_else(|e| panic!("{e}"));
        let [written] = dirty.as_slice() else {
            panic!("{dirty:?}")
        };
        let value = writer
            .read(&written.bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        (written.bytes.clone(), value)
    }

    /// A state record written from the remembered commands encoded once, as commands join and leave
    /// the window over several batches (accepted and rejected, several per batch), is byte for byte
    /// what serde writes of the same record, and holds the window's commands with their outcomes.
    #[test]
    fn states_written_from_commands_encoded_once_are_what_serde_writes() {
        use causeway_contracts::hosting::{Host, Limits, Stamp};
        use causeway_core::tracked::DedupWindow;
        let window = DedupWindow {
            max_commands: 4,
            ..DedupWindow::default()
        };
        let mut host: Host<Inventory> = Host::new("orders", window, Limits::default());
        let writer = state_writer(&host);
        let mut sent: Vec<(String, Option<i64>)> = Vec::new();
        let mut n = 0;
        for batch in 0..8 {
            for _ in 0..batch % 3 + 1 {
                n += 1;
                let command_id = format!("c-{n}-{}", "x".repeat(n * 7));
                let (name, value) = if n % 3 == 0 {
                    let reserve = ReserveStock {
                        command_id: command_id.clone(),
                        sku: "tea".into(),
                        order_id: format!("o-{n}"),
                        quantity: 1_000_000,
                        ..ReserveStock::default()
                    };
                    (
                        "causeway.orders.inventory.ReserveStock",
                        apache_avro::to_value(reserve),
                    )
                } else {
                    let add = AddStock {
                        command_id: command_id.clone(),
                        sku: "tea".into(),
                        quantity: 2,
                        ..AddStock::default()
                    };
                    (
                        "causeway.orders.inventory.AddStock",
                        apache_avro::to_value(add),
                    )
                };
                let value = value.unwrap_or_else(|e| panic!("{e}"));
                let at = 1_000 + i64::try_from(n).unwrap_or(0);
                let stamp = Stamp {
                    command_at_ms: at,
                    now_ms: at,
                };
                let decided = host
                    .decide(0, Some(b"tea"), name, &value, stamp, false)
                    .unwrap_or_else(|e| panic!("{}", e.reason));
                assert!(!decided.duplicate);
                host.commit();
                let accepted = sent.iter().filter(|(_, v)| v.is_some()).count();
                let version = (n % 3 != 0).then(|| i64::try_from(accepted + 1).unwrap_or(0));
                sent.push((command_id, version));
            }
            let (written, value) = the_written_state(&mut host, &writer, 5_000 + batch);
            let record: StateRecord<Inventory> =
                apache_avro::from_value(&value).unwrap_or_else(|e| panic!("{e}"));
            let mut again = Vec::new();
            writer
                .write(&record, &mut again)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(written, again, "batch {batch}");
            let window: Vec<(String, Option<i64>)> = record
                .recent_commands
                .iter()
                .map(|r| (r.command_id.clone(), r.new_version))
                .collect();
            assert_eq!(
                window,
                sent[sent.len().saturating_sub(4)..],
                "batch {batch}"
            );
            assert!(
                record
                    .recent_commands
                    .iter()
                    .all(|r| r.new_version.is_some() == r.rejection_code.is_none()),
                "{record:?}"
            );
            assert_eq!(record.updated_at, 5_000 + batch);
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
        let record =
            Account::event_record(event, metadata.clone()).unwrap_or_else(|e| panic!("{e}"));
        let (name, value) = (
            record.full_name,
            record.value().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(name, "causeway.orders.payment.FundsDeposited");
        let PaymentEvent::Deposited(back) =
            Account::event(name, &value).unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("read back as another event")
        };
        assert_eq!((back.metadata, back.amount_cents), (metadata, 5));
    }
}

#[cfg(test)]
mod saga_tests {
    use std::sync::Arc;

    use apache_avro::types::Value;
    use causeway_contracts::hosting::{Body, Hosted, Limits, Stamp};
    use causeway_contracts::records::{
        CommandOutcome, CommandResult, SagaHistoryEntry, SagaRecord, SagaRequest, SagaTimer,
    };
    use causeway_contracts::saga::{Route, SagaContract, SagaHost, SagaRouter, Unobserved};
    use causeway_core::saga::Policy;

    use crate::contracts::OrderLine;

    use super::tests::{state_writer, the_written_state};
    use crate::contracts::order::{OrderConfirmed, OrderPlaced};
    use crate::contracts::tests::{catalog, check};
    use crate::fulfilment::{FulfilmentLine, OrderFulfilment, Phase};

    fn host() -> SagaHost<OrderFulfilment> {
        SagaHost::new(
            "orders",
            Policy::default(),
            Limits::default(),
            Arc::new(Unobserved),
        )
    }

    fn placed(order: &str) -> Value {
        let e = OrderPlaced {
            order_id: order.into(),
            lines: vec![OrderLine {
                sku: "tea".into(),
                quantity: 2,
                unit_price_cents: 450,
            }],
            currency: "EUR".into(),
            payment_account_id: "acc".into(),
            total_cents: 900,
            ..OrderPlaced::default()
        };
        apache_avro::to_value(&e).unwrap_or_else(|e| panic!("{e}"))
    }

    const PLACED: &str = "causeway.orders.order.OrderPlaced";

    fn at(now_ms: i64) -> Stamp {
        Stamp {
            command_at_ms: now_ms,
            now_ms,
        }
    }

    #[test]
    fn the_saga_state_fits_its_changelog_record() {
        let record = SagaRecord {
            saga_id: "o-1".into(),
            status: "running".into(),
            step: "reserve_stock".into(),
            state: OrderFulfilment {
                order_id: "o-1".into(),
                account_id: "acc".into(),
                amount_cents: 900,
                lines: vec![FulfilmentLine {
                    sku: "tea".into(),
                    quantity: 2,
                }],
                phase: Phase::Reserving,
                line: 0,
                reserved: 0,
                reason: Some("why".into()),
            },
            pending: vec![SagaRequest {
                key: "reserve/0".into(),
                command_id: "order-fulfilment/o-1/reserve/0".into(),
                attempts: 2,
                first_sent_at: 1,
                retry_at: 2,
                topic: "orders.inventory.commands".into(),
                record_key: "tea".into(),
                payload: vec![0, 0, 0, 0, 7, 1, 2, 3],
            }],
            timers: vec![SagaTimer {
                name: "fulfilment".into(),
                at: 3,
            }],
            history: vec![SagaHistoryEntry {
                at: 1,
                step: "reserve_stock".into(),
                what: "OrderPlaced".into(),
            }],
            started_at: 1,
            step_since: 1,
            updated_at: 2,
            deadlines_fired: 0,
        };
        check(&catalog(), OrderFulfilment::STATE_RECORD, &record);
    }

    /// An input decided, its command encoded and kept, the state written and read back by another host:
    /// the same instance, with what it awaits due at the same time.
    #[test]
    fn an_instance_is_written_and_restored_with_what_it_awaits() {
        let mut a = host();
        let decided = a
            .decide(0, Some(b"o-1"), PLACED, &placed("o-1"), at(1_000), false)
            .unwrap_or_else(|e| panic!("{}", e.reason));
        assert!(decided.result.is_none() && decided.events.is_empty());
        let [send] = decided.sends.as_slice() else {
            panic!("{:?}", decided.sends)
        };
        assert_eq!(
            (send.topic.as_str(), send.key.as_str()),
            ("orders.inventory.commands", "tea")
        );
        let Body::Record { full_name, value } = &send.body else {
            panic!("{:?}", send.body)
        };
        assert_eq!(*full_name, "causeway.orders.inventory.ReserveStock");
        let Value::Record(fields) = value else {
            panic!("{value:?}")
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            field("command_id"),
            Some(Value::String("order-fulfilment/o-1/reserve/0".into()))
        );
        assert_eq!(
            field("correlation_id"),
            Some(Value::Union(1, Box::new(Value::String("o-1".into()))))
        );
        a.encoded(0, &[0, 0, 0, 0, 9, 42]);
        a.commit();
        assert_eq!(a.due(1_000, 10, &|_| true), []);
        assert_eq!(a.due(6_000, 10, &|_| true), [(0, "o-1".to_string())]);
        let writer = state_writer(&a);
        let (_, value) = the_written_state(&mut a, &writer, 1_000);
        let mut b = host();
        b.restore(0, "o-1", Some(&value))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.states(), 1);
        assert_eq!(b.due(6_000, 10, &|_| true), [(0, "o-1".to_string())]);
        // The retry sends the very bytes kept.
        let retry = b
            .decide_due(0, "o-1", at(6_000))
            .unwrap_or_else(|e| panic!("{e}"));
        let [again] = retry.sends.as_slice() else {
            panic!("{:?}", retry.sends)
        };
        assert!(
            matches!(&again.body, Body::Encoded(bytes) if bytes == &[0, 0, 0, 0, 9, 42]),
            "{:?}",
            again.body
        );
        // A reply to a command it does not await changes nothing; the awaited one moves it on.
        let reply = |command_id: &str| {
            apache_avro::to_value(CommandResult {
                command_id: command_id.into(),
                correlation_id: "o-1".into(),
                outcome: CommandOutcome::Accepted,
                ..CommandResult::default()
            })
            .unwrap_or_else(|e| panic!("{e}"))
        };
        b.discard();
        let stray = b
            .decide(
                0,
                Some(b"o-1"),
                "causeway.CommandResult",
                &reply("other"),
                at(7_000),
                false,
            )
            .unwrap_or_else(|e| panic!("{}", e.reason));
        assert!(stray.duplicate && stray.sends.is_empty());
        let next = b
            .decide(
                0,
                Some(b"o-1"),
                "causeway.CommandResult",
                &reply("order-fulfilment/o-1/reserve/0"),
                at(7_000),
                false,
            )
            .unwrap_or_else(|e| panic!("{}", e.reason));
        assert_eq!(next.sends.len(), 1, "the authorisation");
        assert_eq!(next.sends[0].topic, "orders.payment.commands");
    }

    /// Counts instances by status as the orchestrator's gauge does.
    #[derive(Default)]
    struct Gauge(std::sync::Mutex<std::collections::HashMap<&'static str, i64>>);

    impl causeway_contracts::saga::SagaObserver for Gauge {
        fn moved(
            &self,
            _: &'static str,
            from: Option<causeway_core::saga::Status>,
            to: Option<causeway_core::saga::Status>,
        ) {
            let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = from {
                *g.entry(f.as_str()).or_default() -= 1;
            }
            if let Some(t) = to {
                *g.entry(t.as_str()).or_default() += 1;
            }
        }
        fn compensating(&self, _: &'static str) {
            let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            *g.entry("compensations").or_default() += 1;
        }
        fn finished(&self, _: &'static str, _: causeway_core::saga::Status, _: i64) {}
        fn fired(&self, _: &'static str, _: &str) {}
        fn stepped(&self, _: &'static str, _: &str, _: i64) {}
        fn oldest_open_step(&self, _: &'static str, since_ms: Option<i64>) {
            let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            g.insert("oldest", since_ms.unwrap_or(-1));
        }
    }

    /// A host of the saga reporting to `gauge`.
    fn observed(gauge: &Arc<Gauge>) -> SagaHost<OrderFulfilment> {
        SagaHost::new(
            "orders",
            Policy::default(),
            Limits::default(),
            gauge.clone(),
        )
    }

    impl Gauge {
        fn get(&self, status: &str) -> i64 {
            let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            g.get(status).copied().unwrap_or(0)
        }
    }

    /// The gauge counts what is durable: a decision dead-lettered in the middle of a batch does not
    /// take the others' reports with it, an aborted batch reports nothing, and the instances dropped
    /// after it leave the gauge as their durable status had them.
    #[test]
    fn the_metrics_count_what_is_durable() {
        let gauge = Arc::new(Gauge::default());
        let mut h = observed(&gauge);
        let place = |h: &mut SagaHost<OrderFulfilment>, id: &str| {
            h.decide(0, Some(id.as_bytes()), PLACED, &placed(id), at(1), false)
                .unwrap_or_else(|e| panic!("{}", e.reason))
        };
        place(&mut h, "o-1");
        h.commit();
        place(&mut h, "o-2");
        h.discard();
        h.durable();
        assert_eq!(gauge.get("running"), 1);
        place(&mut h, "o-3");
        h.commit();
        h.aborted();
        h.drop_partition(0);
        assert_eq!(
            gauge.get("running"),
            0,
            "o-3 was never durable, o-1 is no longer held"
        );
        let mut dirty = Vec::new();
        place(&mut h, "o-1");
        h.commit();
        let writer = state_writer(&h);
        h.take_dirty(1, &writer, &mut dirty)
            .unwrap_or_else(|e| panic!("{e}"));
        h.durable();
        assert_eq!(gauge.get("running"), 1);
        // A restore counts each instance once, under its status, and no compensation.
        let mut other = observed(&gauge);
        for d in &dirty {
            let value = writer.read(&d.bytes).unwrap_or_else(|e| panic!("{e}"));
            other
                .restore(d.partition, &d.aggregate_id, Some(&value))
                .unwrap_or_else(|e| panic!("{e}"));
            other
                .restore(d.partition, &d.aggregate_id, Some(&value))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(gauge.get("running"), 2);
        assert_eq!(gauge.get("compensations"), 0);
    }

    /// The oldest open step is told once durable: it follows the instance longest in its step, moves
    /// on when that one moves on, and is none once nothing open is held.
    #[test]
    fn the_oldest_open_step_follows_the_instance_waiting_longest() {
        let gauge = Arc::new(Gauge::default());
        let mut h = observed(&gauge);
        h.decide(0, Some(b"o-1"), PLACED, &placed("o-1"), at(1_000), false)
            .unwrap_or_else(|e| panic!("{}", e.reason));
        h.commit();
        assert_eq!(gauge.get("oldest"), 0, "nothing told before it is durable");
        h.durable();
        assert_eq!(gauge.get("oldest"), 1_000);
        h.decide(0, Some(b"o-2"), PLACED, &placed("o-2"), at(5_000), false)
            .unwrap_or_else(|e| panic!("{}", e.reason));
        h.commit();
        h.durable();
        assert_eq!(gauge.get("oldest"), 1_000, "o-1 waits longer");
        let reserved = apache_avro::to_value(CommandResult {
            command_id: "order-fulfilment/o-1/reserve/0".into(),
            correlation_id: "o-1".into(),
            outcome: CommandOutcome::Accepted,
            ..CommandResult::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        h.decide(
            0,
            Some(b"o-1"),
            "causeway.CommandResult",
            &reserved,
            at(7_000),
            false,
        )
        .unwrap_or_else(|e| panic!("{}", e.reason));
        h.commit();
        h.durable();
        assert_eq!(
            gauge.get("oldest"),
            5_000,
            "o-1 moved on: o-2 is the oldest"
        );
        h.drop_partition(0);
        assert_eq!(gauge.get("oldest"), -1, "none held");
    }

    #[test]
    fn inputs_that_are_not_the_saga_s_are_poison_with_a_reason() {
        let mut h = host();
        let no_key = h.decide(0, None, PLACED, &placed("o-1"), at(1), false);
        assert!(no_key.is_err_and(|p| p.reason.contains("saga id as the record key")));
        let wrong_key = h.decide(0, Some(b"o-2"), PLACED, &placed("o-1"), at(1), false);
        assert!(wrong_key.is_err_and(|p| p.reason.contains("not the saga id")));
        let other = h.decide(
            0,
            Some(b"o-1"),
            "causeway.orders.inventory.StockAdded",
            &placed("o-1"),
            at(1),
            false,
        );
        assert!(other.is_err_and(|p| p.reason.contains("not an input of saga order-fulfilment")));
    }

    #[test]
    fn the_router_forwards_placed_orders_and_the_saga_s_replies_by_saga_id() {
        let mut r = SagaRouter::new(
            "orders.order.events",
            vec![Route::of::<OrderFulfilment>("orders")],
            Limits::default(),
        );
        assert!(!r.home_keyed());
        let d = r
            .decide(3, Some(b"o-9"), PLACED, &placed("o-9"), at(1), false)
            .unwrap_or_else(|e| panic!("{}", e.reason));
        let [f] = d.sends.as_slice() else {
            panic!("{:?}", d.sends)
        };
        assert_eq!(
            (f.topic.as_str(), f.key.as_str()),
            ("orders.order-fulfilment.inbox", "o-9")
        );
        assert!(matches!(f.body, Body::Input));
        let confirmed = apache_avro::to_value(OrderConfirmed {
            order_id: "o-9".into(),
            ..OrderConfirmed::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let d = r
            .decide(
                3,
                Some(b"o-9"),
                "causeway.orders.order.OrderConfirmed",
                &confirmed,
                at(1),
                false,
            )
            .unwrap_or_else(|e| panic!("{}", e.reason));
        assert!(d.sends.is_empty(), "no instance starts from it");
        let result = |command_id: &str| {
            apache_avro::to_value(CommandResult {
                command_id: command_id.into(),
                correlation_id: "o-9".into(),
                ..CommandResult::default()
            })
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let mine = r
            .decide(
                0,
                Some(b"x"),
                "causeway.CommandResult",
                &result("order-fulfilment/o-9/confirm"),
                at(1),
                false,
            )
            .unwrap_or_else(|e| panic!("{}", e.reason));
        assert_eq!(mine.sends.len(), 1);
        assert_eq!(mine.sends[0].key, "o-9");
        let theirs = r
            .decide(
                0,
                Some(b"x"),
                "causeway.CommandResult",
                &result("place-o-9"),
                at(1),
                false,
            )
            .unwrap_or_else(|e| panic!("{}", e.reason));
        assert!(theirs.sends.is_empty());
    }
}
