//! The reference domain's contracts as Rust types. The `.avsc` files under `avro/orders/` are the source
//! of truth; `tests` below check every type against its file, so the two cannot drift apart.
//!
//! Field names and types follow the files one to one: `long` is `i64`, `int` is `i32`, a union with
//! null is an `Option`, `timestamp-millis` is milliseconds since the epoch as `i64`.

use causeway_contracts::records::EventMetadata;
use serde::{Deserialize, Serialize};

/// One line of an order: a quantity of one SKU at a unit price.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Stock keeping unit: the inventory aggregate id.
    pub sku: String,
    /// Units ordered; at least 1.
    pub quantity: i32,
    /// Price of one unit in the order's currency, in minor units (cents).
    pub unit_price_cents: i64,
}

/// Commands and events of the Order aggregate (topics `orders.order.commands` and `orders.order.events`).
pub mod order {
    use super::*;

    /// Cancel an order that has not shipped.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct CancelOrder {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The order (aggregate id).
        pub order_id: String,
        /// Why, for a person.
        pub reason: String,
    }

    /// Confirm a placed order once stock is reserved and payment authorised.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ConfirmOrder {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The order (aggregate id).
        pub order_id: String,
    }

    /// Place a new order.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct PlaceOrder {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The order (aggregate id).
        pub order_id: String,
        /// Who ordered.
        pub customer_id: String,
        /// The order's lines; at least one.
        pub lines: Vec<OrderLine>,
        /// ISO 4217 currency of every price, e.g. EUR.
        pub currency: String,
        /// The payment account to charge.
        pub payment_account_id: String,
    }

    /// Record that a confirmed order has shipped.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ShipOrder {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The order (aggregate id).
        pub order_id: String,
        /// Carrier name.
        pub carrier: String,
        /// Carrier's tracking number.
        pub tracking_number: String,
    }

    /// An order was cancelled.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct OrderCancelled {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The order (aggregate id).
        pub order_id: String,
        /// Why, for a person.
        pub reason: String,
    }

    /// An order was confirmed.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct OrderConfirmed {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The order (aggregate id).
        pub order_id: String,
    }

    /// An order was placed.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct OrderPlaced {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The order (aggregate id).
        pub order_id: String,
        /// Who ordered.
        pub customer_id: String,
        /// The order's lines; at least one.
        pub lines: Vec<OrderLine>,
        /// ISO 4217 currency of every price.
        pub currency: String,
        /// The payment account to charge.
        pub payment_account_id: String,
        /// Sum of quantity times unit price over the lines, in minor units.
        pub total_cents: i64,
    }

    /// An order shipped.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct OrderShipped {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The order (aggregate id).
        pub order_id: String,
        /// Carrier name.
        pub carrier: String,
        /// Carrier's tracking number.
        pub tracking_number: String,
    }
}

/// Commands and events of the Inventory aggregate (topics `orders.inventory.commands` and `orders.inventory.events`).
pub mod inventory {
    use super::*;

    /// Add units to a SKU's stock.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct AddStock {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The stock keeping unit (aggregate id).
        pub sku: String,
        /// Units added; at least 1.
        pub quantity: i32,
    }

    /// Turn an order's reservation into a shipment: the units leave the stock.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct CommitReservation {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The stock keeping unit (aggregate id).
        pub sku: String,
        /// The order the reservation is for.
        pub order_id: String,
    }

    /// Return an order's reserved units to the available stock.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ReleaseReservation {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The stock keeping unit (aggregate id).
        pub sku: String,
        /// The order the reservation is for.
        pub order_id: String,
    }

    /// Reserve units of a SKU for an order; rejected when fewer are available.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ReserveStock {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The stock keeping unit (aggregate id).
        pub sku: String,
        /// The order the reservation is for.
        pub order_id: String,
        /// Units to reserve; at least 1.
        pub quantity: i32,
    }

    /// An order's reserved units left the stock.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ReservationCommitted {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The stock keeping unit (aggregate id).
        pub sku: String,
        /// The order the reservation is for.
        pub order_id: String,
        /// Units shipped.
        pub quantity: i32,
    }

    /// An order's reservation was returned to stock.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ReservationReleased {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The stock keeping unit (aggregate id).
        pub sku: String,
        /// The order the reservation is for.
        pub order_id: String,
        /// Units returned.
        pub quantity: i32,
        /// Units available afterwards.
        pub available: i32,
    }

    /// Units were added to a SKU.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct StockAdded {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The stock keeping unit (aggregate id).
        pub sku: String,
        /// Units added.
        pub quantity: i32,
        /// Units available afterwards.
        pub available: i32,
    }

    /// Units were reserved for an order.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct StockReserved {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The stock keeping unit (aggregate id).
        pub sku: String,
        /// The order the reservation is for.
        pub order_id: String,
        /// Units reserved.
        pub quantity: i32,
        /// Units available afterwards.
        pub available: i32,
    }
}

/// Commands and events of the Payment aggregate (topics `orders.payment.commands` and `orders.payment.events`).
pub mod payment {
    use super::*;

    /// Hold funds for an order; rejected when the available balance is smaller.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct AuthorizePayment {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// The payment (one authorisation).
        pub payment_id: String,
        /// The order paid for.
        pub order_id: String,
        /// Amount in minor units; at least 1.
        pub amount_cents: i64,
    }

    /// Take an authorised payment.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct CapturePayment {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// The payment (one authorisation).
        pub payment_id: String,
    }

    /// Add funds to an account.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct Deposit {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// Amount in minor units; at least 1.
        pub amount_cents: i64,
    }

    /// Open a payment account.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct OpenAccount {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// ISO 4217 currency of the account.
        pub currency: String,
    }

    /// Release an authorised payment's hold.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct VoidPayment {
        /// Unique id of this command, chosen by the sender. A command id seen before returns its first result and changes nothing (idempotency).
        pub command_id: String,
        /// Optimistic concurrency: the aggregate version the sender saw. When set and different from the aggregate's, the command is rejected as a conflict. Null: no check.
        pub expected_version: Option<i64>,
        /// Id shared by every command and event of one business flow. Null: the command id.
        pub correlation_id: Option<String>,
        /// When the sender issued the command. Null: the Kafka record's timestamp.
        pub issued_at: Option<i64>,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// The payment (one authorisation).
        pub payment_id: String,
    }

    /// A payment account was opened.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct AccountOpened {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// ISO 4217 currency of the account.
        pub currency: String,
    }

    /// Funds were added to an account.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct FundsDeposited {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// Amount deposited.
        pub amount_cents: i64,
        /// Balance afterwards.
        pub balance_cents: i64,
    }

    /// Funds were held for an order.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct PaymentAuthorized {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// The payment (one authorisation).
        pub payment_id: String,
        /// The order paid for.
        pub order_id: String,
        /// Amount held.
        pub amount_cents: i64,
        /// Available balance afterwards.
        pub available_cents: i64,
    }

    /// An authorised payment was taken.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct PaymentCaptured {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// The payment (one authorisation).
        pub payment_id: String,
        /// Amount taken.
        pub amount_cents: i64,
        /// Balance afterwards.
        pub balance_cents: i64,
    }

    /// An authorisation was released.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct PaymentVoided {
        /// Who, when and why: shared by every event.
        pub metadata: EventMetadata,
        /// The payment account (aggregate id).
        pub account_id: String,
        /// The payment (one authorisation).
        pub payment_id: String,
        /// Amount released.
        pub amount_cents: i64,
        /// Available balance afterwards.
        pub available_cents: i64,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use causeway_contracts::catalog::Catalog;
    use causeway_contracts::schema::{parse, round_trip};

    pub(crate) fn catalog() -> Catalog {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../avro");
        Catalog::load(&dir).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn check<T>(catalog: &Catalog, full_name: &str, value: &T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let contract = catalog
            .all()
            .find(|c| c.full_name == full_name)
            .unwrap_or_else(|| panic!("no contract {full_name} under avro/"));
        let schema = parse(&contract.schema, &catalog.reference_texts(contract))
            .unwrap_or_else(|e| panic!("{full_name}: {e}"));
        assert_eq!(
            round_trip(&schema, value).as_ref(),
            Ok(value),
            "{full_name}"
        );
        // And as the processor writes it: straight to bytes with the prepared writer, read back.
        if catalog.records.iter().any(|c| c.full_name == full_name) {
            let writer = catalog
                .writer(full_name)
                .unwrap_or_else(|e| panic!("{full_name}: {e}"));
            let mut bytes = Vec::new();
            writer
                .write(value, &mut bytes)
                .unwrap_or_else(|e| panic!("{full_name}: {e}"));
            let back: T = apache_avro::from_value(
                &writer
                    .read(&bytes)
                    .unwrap_or_else(|e| panic!("{full_name}: {e}")),
            )
            .unwrap_or_else(|e| panic!("{full_name}: {e}"));
            assert_eq!(&back, value, "{full_name}: through the prepared writer");
        }
    }

    #[test]
    fn every_type_matches_its_contract() {
        let catalog = catalog();
        check::<order::CancelOrder>(
            &catalog,
            "causeway.orders.order.CancelOrder",
            &order::CancelOrder::default(),
        );
        check::<order::ConfirmOrder>(
            &catalog,
            "causeway.orders.order.ConfirmOrder",
            &order::ConfirmOrder::default(),
        );
        check::<order::PlaceOrder>(
            &catalog,
            "causeway.orders.order.PlaceOrder",
            &order::PlaceOrder::default(),
        );
        check::<order::ShipOrder>(
            &catalog,
            "causeway.orders.order.ShipOrder",
            &order::ShipOrder::default(),
        );
        check::<order::OrderCancelled>(
            &catalog,
            "causeway.orders.order.OrderCancelled",
            &order::OrderCancelled::default(),
        );
        check::<order::OrderConfirmed>(
            &catalog,
            "causeway.orders.order.OrderConfirmed",
            &order::OrderConfirmed::default(),
        );
        check::<order::OrderPlaced>(
            &catalog,
            "causeway.orders.order.OrderPlaced",
            &order::OrderPlaced::default(),
        );
        check::<order::OrderShipped>(
            &catalog,
            "causeway.orders.order.OrderShipped",
            &order::OrderShipped::default(),
        );
        check::<inventory::AddStock>(
            &catalog,
            "causeway.orders.inventory.AddStock",
            &inventory::AddStock::default(),
        );
        check::<inventory::CommitReservation>(
            &catalog,
            "causeway.orders.inventory.CommitReservation",
            &inventory::CommitReservation::default(),
        );
        check::<inventory::ReleaseReservation>(
            &catalog,
            "causeway.orders.inventory.ReleaseReservation",
            &inventory::ReleaseReservation::default(),
        );
        check::<inventory::ReserveStock>(
            &catalog,
            "causeway.orders.inventory.ReserveStock",
            &inventory::ReserveStock::default(),
        );
        check::<inventory::ReservationCommitted>(
            &catalog,
            "causeway.orders.inventory.ReservationCommitted",
            &inventory::ReservationCommitted::default(),
        );
        check::<inventory::ReservationReleased>(
            &catalog,
            "causeway.orders.inventory.ReservationReleased",
            &inventory::ReservationReleased::default(),
        );
        check::<inventory::StockAdded>(
            &catalog,
            "causeway.orders.inventory.StockAdded",
            &inventory::StockAdded::default(),
        );
        check::<inventory::StockReserved>(
            &catalog,
            "causeway.orders.inventory.StockReserved",
            &inventory::StockReserved::default(),
        );
        check::<payment::AuthorizePayment>(
            &catalog,
            "causeway.orders.payment.AuthorizePayment",
            &payment::AuthorizePayment::default(),
        );
        check::<payment::CapturePayment>(
            &catalog,
            "causeway.orders.payment.CapturePayment",
            &payment::CapturePayment::default(),
        );
        check::<payment::Deposit>(
            &catalog,
            "causeway.orders.payment.Deposit",
            &payment::Deposit::default(),
        );
        check::<payment::OpenAccount>(
            &catalog,
            "causeway.orders.payment.OpenAccount",
            &payment::OpenAccount::default(),
        );
        check::<payment::VoidPayment>(
            &catalog,
            "causeway.orders.payment.VoidPayment",
            &payment::VoidPayment::default(),
        );
        check::<payment::AccountOpened>(
            &catalog,
            "causeway.orders.payment.AccountOpened",
            &payment::AccountOpened::default(),
        );
        check::<payment::FundsDeposited>(
            &catalog,
            "causeway.orders.payment.FundsDeposited",
            &payment::FundsDeposited::default(),
        );
        check::<payment::PaymentAuthorized>(
            &catalog,
            "causeway.orders.payment.PaymentAuthorized",
            &payment::PaymentAuthorized::default(),
        );
        check::<payment::PaymentCaptured>(
            &catalog,
            "causeway.orders.payment.PaymentCaptured",
            &payment::PaymentCaptured::default(),
        );
        check::<payment::PaymentVoided>(
            &catalog,
            "causeway.orders.payment.PaymentVoided",
            &payment::PaymentVoided::default(),
        );
        let types = catalog
            .records
            .iter()
            .filter(|c| c.full_name.starts_with("causeway.orders."))
            .filter(|c| {
                !c.topic
                    .as_deref()
                    .is_some_and(|t| t.ends_with(".changelog"))
            })
            .count();
        assert_eq!(
            types, 26,
            "a command or event under avro/orders/ has no Rust type here (states: hosting.rs)"
        );
    }

    #[test]
    fn a_full_order_round_trips() {
        let placed = order::OrderPlaced {
            metadata: EventMetadata {
                event_id: "0190-e".into(),
                aggregate_id: "o-1".into(),
                aggregate_version: 1,
                causation_id: "c-1".into(),
                correlation_id: "c-1".into(),
                occurred_at: 1_764_288_000_000,
                schema_version: 1,
            },
            order_id: "o-1".into(),
            customer_id: "alice".into(),
            lines: vec![
                OrderLine {
                    sku: "tea".into(),
                    quantity: 2,
                    unit_price_cents: 450,
                },
                OrderLine {
                    sku: "mug".into(),
                    quantity: 1,
                    unit_price_cents: 1200,
                },
            ],
            currency: "EUR".into(),
            payment_account_id: "acc-alice".into(),
            total_cents: 2100,
        };
        check(&catalog(), "causeway.orders.order.OrderPlaced", &placed);
        check(&catalog(), "causeway.orders.OrderLine", &placed.lines[0]);
    }
}
