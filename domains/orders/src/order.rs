//! The Order aggregate: placed, then confirmed (stock reserved and payment authorised), then shipped;
//! cancellable until it ships.

use causeway_core::{Aggregate, Rejection};
use serde::{Deserialize, Serialize};

use crate::contracts::order::{
    CancelOrder, ConfirmOrder, OrderCancelled, OrderConfirmed, OrderPlaced, OrderShipped,
    PlaceOrder, ShipOrder,
};

/// Commands of an order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    /// Place it.
    Place(PlaceOrder),
    /// Confirm it.
    Confirm(ConfirmOrder),
    /// Cancel it.
    Cancel(CancelOrder),
    /// Ship it.
    Ship(ShipOrder),
}

/// Events of an order. Their `metadata` is stamped by the processor, not decided here.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    /// Placed.
    Placed(OrderPlaced),
    /// Confirmed.
    Confirmed(OrderConfirmed),
    /// Cancelled.
    Cancelled(OrderCancelled),
    /// Shipped.
    Shipped(OrderShipped),
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Not placed yet.
    #[default]
    New,
    /// Placed, waiting for stock and payment.
    Placed,
    /// Confirmed.
    Confirmed,
    /// Shipped (final).
    Shipped,
    /// Cancelled (final).
    Cancelled,
}

/// The state of one order (the `state` of its changelog record, `OrderState.avsc`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Where it is.
    pub status: OrderStatus,
    /// Its total, in minor units.
    pub total_cents: i64,
}

/// The largest order total accepted, in minor units (guards the sum against overflow).
const MAX_TOTAL_CENTS: i64 = 1_000_000_000_000;

fn reject(code: &'static str, reason: impl Into<String>) -> Result<Vec<OrderEvent>, Rejection> {
    Err(Rejection::new(code, reason))
}

impl Aggregate for Order {
    type Command = OrderCommand;
    type Event = OrderEvent;
    const TYPE: &'static str = "order";

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, Rejection> {
        use OrderStatus as S;
        match command {
            OrderCommand::Place(c) => {
                if self.status != S::New {
                    return reject(
                        "already_placed",
                        format!("order {} was placed before", c.order_id),
                    );
                }
                if c.lines.is_empty() {
                    return reject("invalid_order", "an order needs at least one line");
                }
                if c.currency.len() != 3 || !c.currency.chars().all(|ch| ch.is_ascii_uppercase()) {
                    return reject(
                        "invalid_order",
                        format!("{:?} is not an ISO 4217 currency code", c.currency),
                    );
                }
                let mut total: i64 = 0;
                for line in &c.lines {
                    if line.quantity < 1 || line.unit_price_cents < 0 {
                        return reject(
                            "invalid_order",
                            format!(
                                "line {}: quantity must be at least 1 and the price not negative",
                                line.sku
                            ),
                        );
                    }
                    total = line
                        .unit_price_cents
                        .checked_mul(i64::from(line.quantity))
                        .and_then(|amount| total.checked_add(amount))
                        .filter(|t| *t <= MAX_TOTAL_CENTS)
                        .ok_or_else(|| {
                            Rejection::new("invalid_order", "the order total is too large")
                        })?;
                }
                Ok(vec![OrderEvent::Placed(OrderPlaced {
                    order_id: c.order_id.clone(),
                    customer_id: c.customer_id.clone(),
                    lines: c.lines.clone(),
                    currency: c.currency.clone(),
                    payment_account_id: c.payment_account_id.clone(),
                    total_cents: total,
                    ..OrderPlaced::default()
                })])
            }
            OrderCommand::Confirm(c) => match self.status {
                S::Placed => Ok(vec![OrderEvent::Confirmed(OrderConfirmed {
                    order_id: c.order_id.clone(),
                    ..OrderConfirmed::default()
                })]),
                S::New => reject(
                    "not_found",
                    format!("order {} was never placed", c.order_id),
                ),
                other => reject(
                    "invalid_state",
                    format!("order {} is {other:?}, not placed", c.order_id),
                ),
            },
            OrderCommand::Cancel(c) => match self.status {
                S::Placed | S::Confirmed => Ok(vec![OrderEvent::Cancelled(OrderCancelled {
                    order_id: c.order_id.clone(),
                    reason: c.reason.clone(),
                    ..OrderCancelled::default()
                })]),
                S::New => reject(
                    "not_found",
                    format!("order {} was never placed", c.order_id),
                ),
                other => reject(
                    "invalid_state",
                    format!("order {} is {other:?} and cannot be cancelled", c.order_id),
                ),
            },
            OrderCommand::Ship(c) => match self.status {
                S::Confirmed => Ok(vec![OrderEvent::Shipped(OrderShipped {
                    order_id: c.order_id.clone(),
                    carrier: c.carrier.clone(),
                    tracking_number: c.tracking_number.clone(),
                    ..OrderShipped::default()
                })]),
                S::New => reject(
                    "not_found",
                    format!("order {} was never placed", c.order_id),
                ),
                other => reject(
                    "invalid_state",
                    format!("order {} is {other:?}, not confirmed", c.order_id),
                ),
            },
        }
    }

    fn apply(mut self, event: &OrderEvent) -> Self {
        match event {
            OrderEvent::Placed(e) => {
                self.status = OrderStatus::Placed;
                self.total_cents = e.total_cents;
            }
            OrderEvent::Confirmed(_) => self.status = OrderStatus::Confirmed,
            OrderEvent::Cancelled(_) => self.status = OrderStatus::Cancelled,
            OrderEvent::Shipped(_) => self.status = OrderStatus::Shipped,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::OrderLine;
    use causeway_testkit::given;

    fn place(lines: Vec<OrderLine>) -> OrderCommand {
        OrderCommand::Place(PlaceOrder {
            command_id: "c1".into(),
            order_id: "o-1".into(),
            customer_id: "alice".into(),
            lines,
            currency: "EUR".into(),
            payment_account_id: "acc".into(),
            ..PlaceOrder::default()
        })
    }

    fn line(sku: &str, quantity: i32, unit_price_cents: i64) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            quantity,
            unit_price_cents,
        }
    }

    fn placed(total_cents: i64) -> OrderEvent {
        OrderEvent::Placed(OrderPlaced {
            order_id: "o-1".into(),
            customer_id: "alice".into(),
            lines: vec![line("tea", 2, 450), line("mug", 1, 1200)],
            currency: "EUR".into(),
            payment_account_id: "acc".into(),
            total_cents,
            ..OrderPlaced::default()
        })
    }

    fn confirm() -> OrderCommand {
        OrderCommand::Confirm(ConfirmOrder {
            order_id: "o-1".into(),
            ..ConfirmOrder::default()
        })
    }

    fn confirmed() -> OrderEvent {
        OrderEvent::Confirmed(OrderConfirmed {
            order_id: "o-1".into(),
            ..OrderConfirmed::default()
        })
    }

    fn cancel() -> OrderCommand {
        OrderCommand::Cancel(CancelOrder {
            order_id: "o-1".into(),
            reason: "changed mind".into(),
            ..CancelOrder::default()
        })
    }

    fn ship() -> OrderCommand {
        OrderCommand::Ship(ShipOrder {
            order_id: "o-1".into(),
            carrier: "dhl".into(),
            tracking_number: "T1".into(),
            ..ShipOrder::default()
        })
    }

    #[test]
    fn placing_computes_the_total() {
        let state = given::<Order>([])
            .when(place(vec![line("tea", 2, 450), line("mug", 1, 1200)]))
            .then([placed(2100)]);
        assert_eq!(
            state,
            Order {
                status: OrderStatus::Placed,
                total_cents: 2100
            }
        );
    }

    #[test]
    fn bad_orders_are_rejected() {
        given::<Order>([])
            .when(place(vec![]))
            .then_rejected("invalid_order");
        given::<Order>([])
            .when(place(vec![line("tea", 0, 450)]))
            .then_rejected("invalid_order");
        given::<Order>([])
            .when(place(vec![line("tea", 1, -1)]))
            .then_rejected("invalid_order");
        given::<Order>([])
            .when(place(vec![line("gold", i32::MAX, i64::MAX)]))
            .then_rejected("invalid_order");
        given::<Order>([placed(2100)])
            .when(place(vec![line("tea", 1, 1)]))
            .then_rejected("already_placed");
    }

    #[test]
    fn the_life_of_an_order() {
        given::<Order>([placed(2100)])
            .when(confirm())
            .then([confirmed()]);
        given::<Order>([placed(2100), confirmed()])
            .when(ship())
            .then([OrderEvent::Shipped(OrderShipped {
                order_id: "o-1".into(),
                carrier: "dhl".into(),
                tracking_number: "T1".into(),
                ..OrderShipped::default()
            })]);
        let cancelled = given::<Order>([placed(2100), confirmed()])
            .when(cancel())
            .then([OrderEvent::Cancelled(OrderCancelled {
                order_id: "o-1".into(),
                reason: "changed mind".into(),
                ..OrderCancelled::default()
            })]);
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
    }

    #[test]
    fn out_of_order_commands_are_rejected() {
        given::<Order>([])
            .when(confirm())
            .then_rejected("not_found");
        given::<Order>([placed(1)])
            .when(ship())
            .then_rejected("invalid_state");
        given::<Order>([placed(1), confirmed()])
            .when(confirm())
            .then_rejected("invalid_state");
        let shipped = OrderEvent::Shipped(OrderShipped::default());
        given::<Order>([placed(1), confirmed(), shipped])
            .when(cancel())
            .then_rejected("invalid_state");
    }
}
