//! The read models of the shop, each fed by one aggregate's events:
//! - [`OrderById`]: an order's status, customer, lines and total; filed under its customer (newest
//!   first) in index `orders-by-customer`.
//! - [`StockBySku`]: units available and reserved per SKU.
//! - [`AccountBalance`]: an account's currency, balance and funds held.
//! - [`DAILY_SALES`]: the daily sales rollup over the order documents (ClickHouse).

use causeway_core::projection::{Change, EventInfo, Projection, Value};

use crate::inventory::{Inventory, InventoryEvent};
use crate::order::{Order, OrderEvent};
use crate::payment::{Account, PaymentEvent};

/// The daily sales rollup (ClickHouse): per day (UTC) and currency, the orders placed and not
/// cancelled, and their total. Computed from the deduplicated order documents, so it is exact whatever
/// the projector delivered twice.
pub const DAILY_SALES: &str = "SELECT toDate(toDateTime(intDiv(toInt64(placed_at), 1000), 'UTC')) AS day, \
     currency, count() AS orders, sum(toInt64(total_cents)) AS total_cents \
     FROM {order-by-id} FINAL WHERE status != 'CANCELLED' AND placed_at != '' \
     GROUP BY day, currency";

/// The index of orders by customer.
pub const ORDERS_BY_CUSTOMER: &str = "orders-by-customer";

/// An order by id.
#[derive(Debug, Default)]
pub struct OrderById;

impl Projection for OrderById {
    type Aggregate = Order;
    const NAME: &'static str = "order-by-id";
    const FIELDS: &'static [&'static str] = &[
        "status",
        "customer_id",
        "currency",
        "lines",
        "total_cents",
        "placed_at",
        "reason",
        "carrier",
        "tracking_number",
    ];

    fn project(&self, event: &OrderEvent, info: &EventInfo<'_>) -> Result<Change, String> {
        Ok(match event {
            OrderEvent::Placed(e) => {
                let lines: Vec<serde_json::Value> = e
                    .lines
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "sku": l.sku,
                            "quantity": l.quantity,
                            "unit_price_cents": l.unit_price_cents,
                        })
                    })
                    .collect();
                Change::none()
                    .text("status", "PLACED")
                    .text("customer_id", &e.customer_id)
                    .text("currency", &e.currency)
                    .set(
                        "lines",
                        Value::Json(serde_json::Value::from(lines).to_string()),
                    )
                    .int("total_cents", e.total_cents)
                    .int("placed_at", info.occurred_at_ms)
                    .index(ORDERS_BY_CUSTOMER, &e.customer_id, info.occurred_at_ms)
            }
            OrderEvent::Confirmed(_) => Change::none().text("status", "CONFIRMED"),
            OrderEvent::Cancelled(e) => Change::none()
                .text("status", "CANCELLED")
                .text("reason", &e.reason),
            OrderEvent::Shipped(e) => Change::none()
                .text("status", "SHIPPED")
                .text("carrier", &e.carrier)
                .text("tracking_number", &e.tracking_number),
        })
    }
}

/// Stock by SKU.
#[derive(Debug, Default)]
pub struct StockBySku;

impl Projection for StockBySku {
    type Aggregate = Inventory;
    const NAME: &'static str = "stock-by-sku";
    const FIELDS: &'static [&'static str] = &["available", "reserved"];

    fn project(&self, event: &InventoryEvent, _: &EventInfo<'_>) -> Result<Change, String> {
        Ok(match event {
            InventoryEvent::Added(e) => Change::none()
                .int("available", i64::from(e.available))
                .add("reserved", 0),
            InventoryEvent::Reserved(e) => Change::none()
                .int("available", i64::from(e.available))
                .add("reserved", i64::from(e.quantity)),
            InventoryEvent::Released(e) => Change::none()
                .int("available", i64::from(e.available))
                .add("reserved", -i64::from(e.quantity)),
            InventoryEvent::Committed(e) => Change::none().add("reserved", -i64::from(e.quantity)),
        })
    }
}

/// An account's balance.
#[derive(Debug, Default)]
pub struct AccountBalance;

impl Projection for AccountBalance {
    type Aggregate = Account;
    const NAME: &'static str = "account-balance";
    const FIELDS: &'static [&'static str] = &["currency", "balance_cents", "held_cents"];

    fn project(&self, event: &PaymentEvent, _: &EventInfo<'_>) -> Result<Change, String> {
        Ok(match event {
            PaymentEvent::Opened(e) => Change::none()
                .text("currency", &e.currency)
                .int("balance_cents", 0)
                .add("held_cents", 0),
            PaymentEvent::Deposited(e) => Change::none().int("balance_cents", e.balance_cents),
            PaymentEvent::Authorized(e) => Change::none().add("held_cents", e.amount_cents),
            PaymentEvent::Captured(e) => Change::none()
                .int("balance_cents", e.balance_cents)
                .add("held_cents", -e.amount_cents),
            PaymentEvent::Voided(e) => Change::none().add("held_cents", -e.amount_cents),
        })
    }
}

#[cfg(test)]
mod tests {
    use causeway_testkit::projected;

    use super::*;
    use crate::contracts::OrderLine;
    use crate::contracts::inventory::*;
    use crate::contracts::order::*;
    use crate::contracts::payment::*;

    #[test]
    fn an_order_is_placed_confirmed_and_shipped() {
        let placed = OrderEvent::Placed(OrderPlaced {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            currency: "EUR".into(),
            lines: vec![OrderLine {
                sku: "tea".into(),
                quantity: 2,
                unit_price_cents: 350,
            }],
            total_cents: 700,
            ..OrderPlaced::default()
        });
        let d = projected::<OrderById>([
            placed,
            OrderEvent::Confirmed(OrderConfirmed::default()),
            OrderEvent::Shipped(OrderShipped {
                carrier: "dhl".into(),
                tracking_number: "t-9".into(),
                ..OrderShipped::default()
            }),
        ])
        .then_fields([
            ("status", "SHIPPED"),
            ("customer_id", "c-1"),
            ("total_cents", "700"),
            ("placed_at", "1000"),
            ("carrier", "dhl"),
            (
                "lines",
                r#"[{"quantity":2,"sku":"tea","unit_price_cents":350}]"#,
            ),
        ]);
        assert_eq!(d.version, 3);
        assert_eq!(d.index.len(), 1);
        assert_eq!(
            (d.index[0].index, d.index[0].key.as_str(), d.index[0].score),
            (ORDERS_BY_CUSTOMER, "c-1", 1000)
        );
    }

    #[test]
    fn stock_follows_reservations() {
        projected::<StockBySku>([
            InventoryEvent::Added(StockAdded {
                quantity: 10,
                available: 10,
                ..StockAdded::default()
            }),
            InventoryEvent::Reserved(StockReserved {
                quantity: 4,
                available: 6,
                ..StockReserved::default()
            }),
            InventoryEvent::Reserved(StockReserved {
                quantity: 1,
                available: 5,
                ..StockReserved::default()
            }),
            InventoryEvent::Released(ReservationReleased {
                quantity: 1,
                available: 6,
                ..ReservationReleased::default()
            }),
            InventoryEvent::Committed(ReservationCommitted {
                quantity: 4,
                ..ReservationCommitted::default()
            }),
        ])
        .then_fields([("available", "6"), ("reserved", "0")]);
    }

    #[test]
    fn a_balance_follows_deposits_holds_and_captures() {
        projected::<AccountBalance>([
            PaymentEvent::Opened(AccountOpened {
                currency: "EUR".into(),
                ..AccountOpened::default()
            }),
            PaymentEvent::Deposited(FundsDeposited {
                amount_cents: 1000,
                balance_cents: 1000,
                ..FundsDeposited::default()
            }),
            PaymentEvent::Authorized(PaymentAuthorized {
                amount_cents: 300,
                ..PaymentAuthorized::default()
            }),
            PaymentEvent::Authorized(PaymentAuthorized {
                amount_cents: 200,
                ..PaymentAuthorized::default()
            }),
            PaymentEvent::Captured(PaymentCaptured {
                amount_cents: 300,
                balance_cents: 700,
                ..PaymentCaptured::default()
            }),
            PaymentEvent::Voided(PaymentVoided {
                amount_cents: 200,
                ..PaymentVoided::default()
            }),
        ])
        .then_fields([
            ("currency", "EUR"),
            ("balance_cents", "700"),
            ("held_cents", "0"),
        ]);
    }
}
