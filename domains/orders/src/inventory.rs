//! The Inventory aggregate, one per SKU: stock is added, reserved for orders, released or committed
//! (shipped). Available stock never goes negative, and an order holds at most one reservation per SKU.

use std::collections::BTreeMap;

use causeway_core::{Aggregate, Rejection};
use serde::{Deserialize, Serialize};

use crate::contracts::inventory::{
    AddStock, CommitReservation, ReleaseReservation, ReservationCommitted, ReservationReleased,
    ReserveStock, StockAdded, StockReserved,
};

/// Commands of a SKU's stock.
#[derive(Debug, Clone, PartialEq)]
pub enum InventoryCommand {
    /// Add units.
    Add(AddStock),
    /// Reserve units for an order.
    Reserve(ReserveStock),
    /// Give an order's reservation back.
    Release(ReleaseReservation),
    /// Ship an order's reservation.
    Commit(CommitReservation),
}

/// Events of a SKU's stock.
#[derive(Debug, Clone, PartialEq)]
pub enum InventoryEvent {
    /// Units added.
    Added(StockAdded),
    /// Units reserved.
    Reserved(StockReserved),
    /// A reservation given back.
    Released(ReservationReleased),
    /// A reservation shipped.
    Committed(ReservationCommitted),
}

/// The stock of one SKU (the `state` of its changelog record, `InventoryState.avsc`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Units neither reserved nor shipped.
    pub available: i32,
    /// Units reserved, by order id.
    pub reservations: BTreeMap<String, i32>,
}

/// The most units one SKU may hold (keeps every sum inside `i32`, the contract's type).
pub const MAX_UNITS: i32 = 1_000_000_000;

fn reject(code: &'static str, reason: impl Into<String>) -> Result<Vec<InventoryEvent>, Rejection> {
    Err(Rejection::new(code, reason))
}

impl Aggregate for Inventory {
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    const TYPE: &'static str = "inventory";

    fn handle(&self, command: &InventoryCommand) -> Result<Vec<InventoryEvent>, Rejection> {
        let reserved: i64 = self.reservations.values().map(|q| i64::from(*q)).sum();
        match command {
            InventoryCommand::Add(c) => {
                if c.quantity < 1 {
                    return reject("invalid_quantity", "add at least 1 unit");
                }
                let total = i64::from(self.available) + reserved + i64::from(c.quantity);
                if total > i64::from(MAX_UNITS) {
                    return reject(
                        "invalid_quantity",
                        format!("a SKU holds at most {MAX_UNITS} units"),
                    );
                }
                Ok(vec![InventoryEvent::Added(StockAdded {
                    sku: c.sku.clone(),
                    quantity: c.quantity,
                    available: self.available + c.quantity,
                    ..StockAdded::default()
                })])
            }
            InventoryCommand::Reserve(c) => {
                if c.quantity < 1 {
                    return reject("invalid_quantity", "reserve at least 1 unit");
                }
                if self.reservations.contains_key(&c.order_id) {
                    return reject(
                        "duplicate_reservation",
                        format!(
                            "order {} already holds a reservation of {}",
                            c.order_id, c.sku
                        ),
                    );
                }
                if c.quantity > self.available {
                    return reject(
                        "insufficient_stock",
                        format!(
                            "{} units of {} requested, {} available",
                            c.quantity, c.sku, self.available
                        ),
                    );
                }
                Ok(vec![InventoryEvent::Reserved(StockReserved {
                    sku: c.sku.clone(),
                    order_id: c.order_id.clone(),
                    quantity: c.quantity,
                    available: self.available - c.quantity,
                    ..StockReserved::default()
                })])
            }
            InventoryCommand::Release(c) => match self.reservations.get(&c.order_id) {
                Some(quantity) => Ok(vec![InventoryEvent::Released(ReservationReleased {
                    sku: c.sku.clone(),
                    order_id: c.order_id.clone(),
                    quantity: *quantity,
                    available: self.available + quantity,
                    ..ReservationReleased::default()
                })]),
                None => reject(
                    "no_reservation",
                    format!("order {} holds no reservation of {}", c.order_id, c.sku),
                ),
            },
            InventoryCommand::Commit(c) => match self.reservations.get(&c.order_id) {
                Some(quantity) => Ok(vec![InventoryEvent::Committed(ReservationCommitted {
                    sku: c.sku.clone(),
                    order_id: c.order_id.clone(),
                    quantity: *quantity,
                    ..ReservationCommitted::default()
                })]),
                None => reject(
                    "no_reservation",
                    format!("order {} holds no reservation of {}", c.order_id, c.sku),
                ),
            },
        }
    }

    fn apply(mut self, event: &InventoryEvent) -> Self {
        match event {
            InventoryEvent::Added(e) => self.available = e.available,
            InventoryEvent::Reserved(e) => {
                self.available = e.available;
                self.reservations.insert(e.order_id.clone(), e.quantity);
            }
            InventoryEvent::Released(e) => {
                self.available = e.available;
                self.reservations.remove(&e.order_id);
            }
            InventoryEvent::Committed(e) => {
                self.reservations.remove(&e.order_id);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_testkit::given;

    fn add(quantity: i32) -> InventoryCommand {
        InventoryCommand::Add(AddStock {
            sku: "tea".into(),
            quantity,
            ..AddStock::default()
        })
    }
    fn added(quantity: i32, available: i32) -> InventoryEvent {
        InventoryEvent::Added(StockAdded {
            sku: "tea".into(),
            quantity,
            available,
            ..StockAdded::default()
        })
    }
    fn reserve(order: &str, quantity: i32) -> InventoryCommand {
        InventoryCommand::Reserve(ReserveStock {
            sku: "tea".into(),
            order_id: order.into(),
            quantity,
            ..ReserveStock::default()
        })
    }
    fn reserved(order: &str, quantity: i32, available: i32) -> InventoryEvent {
        InventoryEvent::Reserved(StockReserved {
            sku: "tea".into(),
            order_id: order.into(),
            quantity,
            available,
            ..StockReserved::default()
        })
    }
    fn release(order: &str) -> InventoryCommand {
        InventoryCommand::Release(ReleaseReservation {
            sku: "tea".into(),
            order_id: order.into(),
            ..ReleaseReservation::default()
        })
    }
    fn commit(order: &str) -> InventoryCommand {
        InventoryCommand::Commit(CommitReservation {
            sku: "tea".into(),
            order_id: order.into(),
            ..CommitReservation::default()
        })
    }

    #[test]
    fn stock_is_added_reserved_released_and_committed() {
        given::<Inventory>([]).when(add(5)).then([added(5, 5)]);
        given::<Inventory>([added(5, 5)])
            .when(reserve("o-1", 3))
            .then([reserved("o-1", 3, 2)]);
        let state = given::<Inventory>([added(5, 5), reserved("o-1", 3, 2)])
            .when(release("o-1"))
            .then([InventoryEvent::Released(ReservationReleased {
                sku: "tea".into(),
                order_id: "o-1".into(),
                quantity: 3,
                available: 5,
                ..ReservationReleased::default()
            })]);
        assert_eq!(
            state,
            Inventory {
                available: 5,
                reservations: BTreeMap::new()
            }
        );
        let state = given::<Inventory>([added(5, 5), reserved("o-1", 3, 2)])
            .when(commit("o-1"))
            .then([InventoryEvent::Committed(ReservationCommitted {
                sku: "tea".into(),
                order_id: "o-1".into(),
                quantity: 3,
                ..ReservationCommitted::default()
            })]);
        assert_eq!(
            state.available, 2,
            "committed units leave the stock for good"
        );
    }

    #[test]
    fn stock_never_goes_negative() {
        given::<Inventory>([added(5, 5)])
            .when(reserve("o-1", 6))
            .then_rejected("insufficient_stock");
        given::<Inventory>([added(5, 5), reserved("o-1", 5, 0)])
            .when(reserve("o-2", 1))
            .then_rejected("insufficient_stock");
        given::<Inventory>([])
            .when(reserve("o-1", 1))
            .then_rejected("insufficient_stock");
        given::<Inventory>([])
            .when(add(0))
            .then_rejected("invalid_quantity");
        given::<Inventory>([added(5, 5)])
            .when(reserve("o-1", -1))
            .then_rejected("invalid_quantity");
        given::<Inventory>([added(MAX_UNITS, MAX_UNITS)])
            .when(add(1))
            .then_rejected("invalid_quantity");
    }

    #[test]
    fn one_reservation_per_order_and_none_to_release_twice() {
        given::<Inventory>([added(5, 5), reserved("o-1", 1, 4)])
            .when(reserve("o-1", 1))
            .then_rejected("duplicate_reservation");
        given::<Inventory>([added(5, 5)])
            .when(release("o-1"))
            .then_rejected("no_reservation");
        given::<Inventory>([added(5, 5)])
            .when(commit("o-1"))
            .then_rejected("no_reservation");
    }
}
