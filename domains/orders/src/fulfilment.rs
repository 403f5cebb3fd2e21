//! The OrderFulfilment saga, one per placed order: reserve stock for every line (one SKU after the
//! other), then authorise the payment, then confirm the order and capture the payment.
//!
//! A rejection (a line out of stock, the payment declined, the order no longer confirmable), a command
//! with no answer after its retries, or the `fulfilment` deadline passing before the confirmation is
//! sent compensates in reverse order: void the payment, release the reservations last to first, cancel the
//! order with the reason. A command whose answer never came is compensated as if it had succeeded (it may
//! still be applied: the aggregate processes the compensation after it, and a compensation of something
//! that never happened is rejected harmlessly; a rejection of a command sent more than once counts as
//! possibly done for the same reason). Sending the confirmation is the point of no return: from there
//! the deadline no longer applies, and the confirmation, the capture and every compensation are sent
//! until answered: they must happen.

use causeway_core::saga::{Input, Reply, Status};
use causeway_core::{Reaction, Saga};
use serde::{Deserialize, Serialize};

use crate::contracts::inventory::{ReleaseReservation, ReserveStock};
use crate::contracts::order::{CancelOrder, ConfirmOrder, OrderPlaced};
use crate::contracts::payment::{AuthorizePayment, CapturePayment, VoidPayment};
use crate::inventory::InventoryCommand;
use crate::order::{OrderCommand, OrderEvent};
use crate::payment::PaymentCommand;

/// The deadline for sending the confirmation.
pub const FULFILMENT: &str = "fulfilment";

/// The version of an order right after OrderPlaced (its first event).
const PLACED_VERSION: i64 = 1;

/// What the saga sends: commands of the three aggregates.
#[derive(Debug, Clone, PartialEq)]
pub enum FulfilmentCommand {
    /// To an order.
    Order(OrderCommand),
    /// To a SKU's stock.
    Inventory(InventoryCommand),
    /// To a payment account.
    Payment(PaymentCommand),
}

/// Where one fulfilment is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Not started.
    #[default]
    New,
    /// Reserving line `line`.
    Reserving,
    /// Authorising the payment.
    Authorizing,
    /// Confirming the order.
    Confirming,
    /// Capturing the payment.
    Capturing,
    /// Compensating: voiding the payment.
    Voiding,
    /// Compensating: releasing line `line`.
    Releasing,
    /// Compensating: cancelling the order.
    Cancelling,
    /// Done: confirmed and paid.
    Confirmed,
    /// Done: cancelled, everything given back.
    Cancelled,
    /// Done: confirmed, but the payment could not be captured.
    Failed,
}

/// One SKU of the order (lines of the same SKU merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentLine {
    /// The SKU.
    pub sku: String,
    /// Units.
    pub quantity: i32,
}

/// The state of one fulfilment (the `state` of its changelog record, `OrderFulfilmentState.avsc`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderFulfilment {
    /// The order.
    pub order_id: String,
    /// The account that pays.
    pub account_id: String,
    /// The amount, in minor units.
    pub amount_cents: i64,
    /// The SKUs to reserve, in order.
    pub lines: Vec<FulfilmentLine>,
    /// Where it is.
    pub phase: Phase,
    /// The line being reserved or released.
    pub line: i32,
    /// Lines reserved (or asked for with no answer): released when compensating.
    pub reserved: i32,
    /// Why it was cancelled or failed.
    pub reason: Option<String>,
}

type Next = Option<Reaction<OrderFulfilment, FulfilmentCommand>>;

impl OrderFulfilment {
    fn reserve(&self, i: i32) -> FulfilmentCommand {
        let line = self.line_at(i);
        FulfilmentCommand::Inventory(InventoryCommand::Reserve(ReserveStock {
            sku: line.sku.clone(),
            order_id: self.order_id.clone(),
            quantity: line.quantity,
            ..ReserveStock::default()
        }))
    }

    fn release(&self, i: i32) -> FulfilmentCommand {
        FulfilmentCommand::Inventory(InventoryCommand::Release(ReleaseReservation {
            sku: self.line_at(i).sku.clone(),
            order_id: self.order_id.clone(),
            ..ReleaseReservation::default()
        }))
    }

    fn authorize(&self) -> FulfilmentCommand {
        FulfilmentCommand::Payment(PaymentCommand::Authorize(AuthorizePayment {
            account_id: self.account_id.clone(),
            payment_id: self.order_id.clone(),
            order_id: self.order_id.clone(),
            amount_cents: self.amount_cents,
            ..AuthorizePayment::default()
        }))
    }

    fn void(&self) -> FulfilmentCommand {
        FulfilmentCommand::Payment(PaymentCommand::Void(VoidPayment {
            account_id: self.account_id.clone(),
            payment_id: self.order_id.clone(),
            ..VoidPayment::default()
        }))
    }

    fn capture(&self) -> FulfilmentCommand {
        FulfilmentCommand::Payment(PaymentCommand::Capture(CapturePayment {
            account_id: self.account_id.clone(),
            payment_id: self.order_id.clone(),
            ..CapturePayment::default()
        }))
    }

    fn confirm(&self) -> FulfilmentCommand {
        FulfilmentCommand::Order(OrderCommand::Confirm(ConfirmOrder {
            order_id: self.order_id.clone(),
            ..ConfirmOrder::default()
        }))
    }

    /// Cancel the order if it is still as placed (version 1): an order confirmed meanwhile (by this
    /// saga's late confirmation, or by anyone) is never cancelled by a compensation.
    fn cancel(&self) -> FulfilmentCommand {
        FulfilmentCommand::Order(OrderCommand::Cancel(CancelOrder {
            order_id: self.order_id.clone(),
            reason: self.reason.clone().unwrap_or_default(),
            expected_version: Some(PLACED_VERSION),
            ..CancelOrder::default()
        }))
    }

    fn line_at(&self, i: i32) -> FulfilmentLine {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.lines.get(i))
            .cloned()
            .unwrap_or_default()
    }

    fn len(&self) -> i32 {
        i32::try_from(self.lines.len()).unwrap_or(i32::MAX)
    }

    /// Start compensating for `reason`: `reserved` lines to release, the payment to void when `paid`.
    fn compensate(&self, reason: String, reserved: i32, paid: bool) -> Next {
        let mut next = self.clone();
        next.reason = Some(reason);
        next.reserved = reserved;
        let first = next.after_void(paid);
        Some(first.clear(FULFILMENT))
    }

    /// The compensation step after the payment (voided when `void`).
    fn after_void(mut self, void: bool) -> Reaction<Self, FulfilmentCommand> {
        if void {
            self.phase = Phase::Voiding;
            let command = self.void();
            return Reaction::to(self).send("void", command);
        }
        let last = self.reserved - 1;
        self.release_from(last)
    }

    /// Release line `i`, then the ones before it, then cancel.
    fn release_from(mut self, i: i32) -> Reaction<Self, FulfilmentCommand> {
        if i >= 0 {
            self.phase = Phase::Releasing;
            self.line = i;
            let command = self.release(i);
            return Reaction::to(self).send(format!("release/{i}"), command);
        }
        self.phase = Phase::Cancelling;
        let command = self.cancel();
        Reaction::to(self).send("cancel", command)
    }

    fn placed(&self, e: &OrderPlaced) -> Next {
        if self.phase != Phase::New {
            return None;
        }
        let mut lines: Vec<FulfilmentLine> = Vec::new();
        for l in &e.lines {
            match lines.iter_mut().find(|x| x.sku == l.sku) {
                Some(x) => x.quantity = x.quantity.saturating_add(l.quantity),
                None => lines.push(FulfilmentLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                }),
            }
        }
        let mut next = Self {
            order_id: e.order_id.clone(),
            account_id: e.payment_account_id.clone(),
            amount_cents: e.total_cents,
            lines,
            ..Self::default()
        };
        if next.lines.is_empty() {
            next.reason = Some("the order has no lines".into());
            next.phase = Phase::Cancelling;
            let command = next.cancel();
            return Some(Reaction::to(next).send("cancel", command));
        }
        next.phase = Phase::Reserving;
        let command = next.reserve(0);
        Some(
            Reaction::to(next)
                .send("reserve/0", command)
                .start(FULFILMENT),
        )
    }

    fn replied(&self, request: &str, reply: Reply<'_>, sends: u32) -> Next {
        // A rejection of a command sent more than once may not be the last word (a later send, out of
        // the aggregate's idempotency window, may still be applied): compensated as possibly done.
        let resent = u32::from(sends > 1);
        use Phase as P;
        let rejected = |what: &str, code: &str, reason: &str| format!("{what}: {code}: {reason}");
        match (self.phase, reply) {
            (P::Reserving, Reply::Accepted) if request == format!("reserve/{}", self.line) => {
                let mut next = self.clone();
                next.reserved = self.line + 1;
                if next.reserved < self.len() {
                    next.line = next.reserved;
                    let command = next.reserve(next.line);
                    let key = format!("reserve/{}", next.line);
                    return Some(Reaction::to(next).send(key, command));
                }
                next.phase = P::Authorizing;
                let command = next.authorize();
                Some(Reaction::to(next).send("authorize", command))
            }
            (P::Reserving, Reply::Rejected { code, reason }) => {
                let sku = self.line_at(self.line).sku;
                let reserved = self.line + i32::try_from(resent).unwrap_or(0);
                self.compensate(rejected(&sku, code, reason), reserved, false)
            }
            (P::Reserving, Reply::NoAnswer) => {
                let sku = self.line_at(self.line).sku;
                self.compensate(
                    format!("{sku}: no answer from inventory"),
                    self.line + 1,
                    false,
                )
            }
            // Confirming is the point of no return: once the confirmation is sent the deadline no
            // longer applies (a cancellation after it could follow a confirmation that was late, not
            // lost), and it is sent until answered.
            (P::Authorizing, Reply::Accepted) => {
                let mut next = self.clone();
                next.phase = P::Confirming;
                let command = next.confirm();
                Some(
                    Reaction::to(next)
                        .send("confirm", command)
                        .clear(FULFILMENT),
                )
            }
            (P::Authorizing, Reply::Rejected { code, reason }) => self.compensate(
                rejected("payment", code, reason),
                self.reserved,
                resent == 1,
            ),
            (P::Authorizing, Reply::NoAnswer) => self.compensate(
                "payment: no answer from payment".into(),
                self.reserved,
                true,
            ),
            (P::Confirming, Reply::Accepted) => {
                let mut next = self.clone();
                next.phase = P::Capturing;
                let command = next.capture();
                Some(Reaction::to(next).send("capture", command))
            }
            (P::Confirming, Reply::Rejected { code, reason }) => {
                self.compensate(rejected("order", code, reason), self.reserved, true)
            }
            (P::Confirming, Reply::NoAnswer) => {
                Some(Reaction::to(self.clone()).send("confirm", self.confirm()))
            }
            (P::Capturing, Reply::Accepted) => {
                let mut next = self.clone();
                next.phase = P::Confirmed;
                Some(Reaction::to(next))
            }
            (P::Capturing, Reply::Rejected { code, reason }) => {
                let mut next = self.clone();
                next.phase = P::Failed;
                next.reason = Some(rejected("capture", code, reason));
                Some(Reaction::to(next))
            }
            // Must happen: sent again (same command id) until answered.
            (P::Capturing, Reply::NoAnswer) => {
                Some(Reaction::to(self.clone()).send("capture", self.capture()))
            }
            (P::Voiding, Reply::NoAnswer) => {
                Some(Reaction::to(self.clone()).send("void", self.void()))
            }
            (P::Releasing, Reply::NoAnswer) => Some(
                Reaction::to(self.clone())
                    .send(format!("release/{}", self.line), self.release(self.line)),
            ),
            (P::Cancelling, Reply::NoAnswer) => {
                Some(Reaction::to(self.clone()).send("cancel", self.cancel()))
            }
            // A compensation is done once answered, accepted or not (nothing to undo is fine).
            (P::Voiding, _) => Some(self.clone().after_void(false)),
            (P::Releasing, _) => Some(self.clone().release_from(self.line - 1)),
            (P::Cancelling, _) => {
                let mut next = self.clone();
                next.phase = P::Cancelled;
                Some(Reaction::to(next))
            }
            _ => None,
        }
    }

    fn deadline(&self) -> Next {
        let reason = "not confirmed before the fulfilment deadline".to_string();
        match self.phase {
            Phase::Reserving => self
                .compensate(reason, self.line + 1, false)
                .map(|r| r.abandon(format!("reserve/{}", self.line))),
            Phase::Authorizing => self
                .compensate(reason, self.reserved, true)
                .map(|r| r.abandon("authorize")),
            _ => None,
        }
    }
}

impl Saga for OrderFulfilment {
    type Event = OrderEvent;
    type Command = FulfilmentCommand;
    const NAME: &'static str = "order-fulfilment";
    const DEADLINES: &'static [(&'static str, i64)] = &[(FULFILMENT, 5 * 60 * 1000)];

    fn saga_id(event: &OrderEvent) -> Option<String> {
        match event {
            OrderEvent::Placed(e) => Some(e.order_id.clone()),
            _ => None,
        }
    }

    fn react(&self, input: Input<'_, OrderEvent>) -> Next {
        match input {
            Input::Event(OrderEvent::Placed(e)) => self.placed(e),
            Input::Event(_) => None,
            Input::Reply {
                request,
                reply,
                sends,
            } => self.replied(request, reply, sends),
            Input::Deadline(FULFILMENT) => self.deadline(),
            Input::Deadline(_) => None,
        }
    }

    fn status(&self) -> Status {
        match self.phase {
            Phase::New
            | Phase::Reserving
            | Phase::Authorizing
            | Phase::Confirming
            | Phase::Capturing => Status::Running,
            Phase::Voiding | Phase::Releasing | Phase::Cancelling => Status::Compensating,
            Phase::Confirmed => Status::Completed,
            Phase::Cancelled => Status::Compensated,
            Phase::Failed => Status::Failed,
        }
    }

    fn step(&self) -> &'static str {
        match self.phase {
            Phase::New => "new",
            Phase::Reserving => "reserve_stock",
            Phase::Authorizing => "authorize_payment",
            Phase::Confirming => "confirm_order",
            Phase::Capturing => "capture_payment",
            Phase::Voiding => "void_payment",
            Phase::Releasing => "release_stock",
            Phase::Cancelling => "cancel_order",
            Phase::Confirmed => "confirmed",
            Phase::Cancelled => "cancelled",
            Phase::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use causeway_core::saga::{Policy, RetryPolicy};
    use causeway_testkit::saga;

    use super::*;
    use crate::contracts::OrderLine;

    type C = FulfilmentCommand;

    fn placed(lines: &[(&str, i32)]) -> OrderEvent {
        OrderEvent::Placed(OrderPlaced {
            order_id: "o-1".into(),
            customer_id: "alice".into(),
            lines: lines
                .iter()
                .map(|(sku, quantity)| OrderLine {
                    sku: (*sku).into(),
                    quantity: *quantity,
                    unit_price_cents: 100,
                })
                .collect(),
            currency: "EUR".into(),
            payment_account_id: "acc".into(),
            total_cents: 700,
            ..OrderPlaced::default()
        })
    }

    fn reserve(sku: &str, quantity: i32) -> C {
        C::Inventory(InventoryCommand::Reserve(ReserveStock {
            sku: sku.into(),
            order_id: "o-1".into(),
            quantity,
            ..ReserveStock::default()
        }))
    }

    fn release(sku: &str) -> C {
        C::Inventory(InventoryCommand::Release(ReleaseReservation {
            sku: sku.into(),
            order_id: "o-1".into(),
            ..ReleaseReservation::default()
        }))
    }

    fn authorize() -> C {
        C::Payment(PaymentCommand::Authorize(AuthorizePayment {
            account_id: "acc".into(),
            payment_id: "o-1".into(),
            order_id: "o-1".into(),
            amount_cents: 700,
            ..AuthorizePayment::default()
        }))
    }

    fn void() -> C {
        C::Payment(PaymentCommand::Void(VoidPayment {
            account_id: "acc".into(),
            payment_id: "o-1".into(),
            ..VoidPayment::default()
        }))
    }

    fn capture() -> C {
        C::Payment(PaymentCommand::Capture(CapturePayment {
            account_id: "acc".into(),
            payment_id: "o-1".into(),
            ..CapturePayment::default()
        }))
    }

    fn confirm() -> C {
        C::Order(OrderCommand::Confirm(ConfirmOrder {
            order_id: "o-1".into(),
            ..ConfirmOrder::default()
        }))
    }

    fn cancel(reason: &str) -> C {
        C::Order(OrderCommand::Cancel(CancelOrder {
            order_id: "o-1".into(),
            reason: reason.into(),
            expected_version: Some(1),
            ..CancelOrder::default()
        }))
    }

    /// A fulfilment of tea x2 and mug x1 with both lines reserved.
    fn reserved_both() -> causeway_testkit::SagaTest<OrderFulfilment> {
        let mut s = saga::<OrderFulfilment>("o-1");
        s.when_event(placed(&[("tea", 2), ("mug", 1)]))
            .then_sends([("reserve/0", reserve("tea", 2))]);
        s.when_accepted("reserve/0")
            .then_sends([("reserve/1", reserve("mug", 1))]);
        s.when_accepted("reserve/1")
            .then_sends([("authorize", authorize())])
            .then_at(Status::Running, "authorize_payment");
        s
    }

    #[test]
    fn happy_path_reserves_every_line_then_pays_then_confirms_and_captures() {
        let mut s = reserved_both();
        s.when_accepted("authorize")
            .then_sends([("confirm", confirm())]);
        s.when_accepted("confirm")
            .then_sends([("capture", capture())]);
        s.when_accepted("capture")
            .then_sends([])
            .then_at(Status::Completed, "confirmed");
        assert!(!s.instance().is_open());
        assert!(s.instance().timers.is_empty());
        // The deadline was cleared once confirmed: nothing fires later.
        s.when_time_passes(3_600_000).then_ignored();
        assert!(s.fired().is_empty());
    }

    #[test]
    fn lines_of_one_sku_are_reserved_together() {
        let mut s = saga::<OrderFulfilment>("o-1");
        s.when_event(placed(&[("tea", 2), ("tea", 3)]))
            .then_sends([("reserve/0", reserve("tea", 5))]);
        s.when_accepted("reserve/0")
            .then_sends([("authorize", authorize())]);
    }

    #[test]
    fn the_second_line_out_of_stock_releases_the_first_and_cancels() {
        let mut s = saga::<OrderFulfilment>("o-1");
        s.when_event(placed(&[("tea", 2), ("mug", 1)]));
        s.when_accepted("reserve/0");
        s.when_rejected("reserve/1", "insufficient_stock")
            .then_sends([("release/0", release("tea"))])
            .then_at(Status::Compensating, "release_stock");
        s.when_accepted("release/0").then_sends([(
            "cancel",
            cancel("mug: insufficient_stock: rejected in a test"),
        )]);
        s.when_accepted("cancel")
            .then_sends([])
            .then_at(Status::Compensated, "cancelled");
        assert!(!s.instance().is_open());
    }

    #[test]
    fn the_first_line_out_of_stock_releases_nothing() {
        let mut s = saga::<OrderFulfilment>("o-1");
        s.when_event(placed(&[("tea", 2), ("mug", 1)]));
        s.when_rejected("reserve/0", "insufficient_stock")
            .then_sends([(
                "cancel",
                cancel("tea: insufficient_stock: rejected in a test"),
            )])
            .then_at(Status::Compensating, "cancel_order");
    }

    #[test]
    fn payment_declined_releases_all_stock_last_line_first() {
        let mut s = reserved_both();
        s.when_rejected("authorize", "insufficient_funds")
            .then_sends([("release/1", release("mug"))]);
        s.when_accepted("release/1")
            .then_sends([("release/0", release("tea"))]);
        // A compensation rejected (nothing to release) is done all the same.
        s.when_rejected("release/0", "no_reservation").then_sends([(
            "cancel",
            cancel("payment: insufficient_funds: rejected in a test"),
        )]);
        s.when_accepted("cancel")
            .then_at(Status::Compensated, "cancelled");
    }

    #[test]
    fn confirmation_refused_voids_the_payment_first() {
        let mut s = reserved_both();
        s.when_accepted("authorize");
        s.when_rejected("confirm", "invalid_state")
            .then_sends([("void", void())])
            .then_at(Status::Compensating, "void_payment");
        s.when_accepted("void")
            .then_sends([("release/1", release("mug"))]);
        s.when_accepted("release/1");
        s.when_accepted("release/0")
            .then_sends([("cancel", cancel("order: invalid_state: rejected in a test"))]);
        s.when_rejected("cancel", "invalid_state")
            .then_at(Status::Compensated, "cancelled");
    }

    #[test]
    fn the_deadline_compensates_what_is_in_flight_as_if_it_succeeded() {
        let mut s = saga::<OrderFulfilment>("o-1").with_policy(Policy {
            retry: RetryPolicy {
                initial_ms: 600_000,
                max_ms: 600_000,
                max_attempts: 3,
            },
            ..Policy::default()
        });
        s.when_event(placed(&[("tea", 2), ("mug", 1)]));
        s.when_accepted("reserve/0");
        s.when_accepted("reserve/1");
        // The payment has not answered when the deadline passes.
        s.when_time_passes(5 * 60 * 1000)
            .then_sends([("void", void())])
            .then_at(Status::Compensating, "void_payment");
        assert_eq!(s.fired(), ["fulfilment"]);
        // The authorisation is no longer awaited: its late answer changes nothing, and it is not resent.
        assert_eq!(s.awaiting(), ["void"]);
        s.when_result_for("order-fulfilment/o-1/authorize")
            .then_ignored();
        s.when_accepted("void");
        s.when_accepted("release/1");
        s.when_accepted("release/0").then_sends([(
            "cancel",
            cancel("not confirmed before the fulfilment deadline"),
        )]);
        s.when_accepted("cancel")
            .then_at(Status::Compensated, "cancelled");
        // Fired once, never again.
        s.when_time_passes(3_600_000).then_ignored();
        assert_eq!(s.fired(), ["fulfilment"]);
        assert_eq!(s.instance().deadlines_fired, 1);
    }

    #[test]
    fn the_deadline_while_reserving_releases_the_line_in_flight() {
        let mut s = saga::<OrderFulfilment>("o-1").with_policy(Policy {
            retry: RetryPolicy {
                initial_ms: 60_000,
                max_ms: 600_000,
                max_attempts: 10,
            },
            deadlines: vec![("fulfilment".into(), 30_000)],
            ..Policy::default()
        });
        s.when_event(placed(&[("tea", 2), ("mug", 1)]));
        s.when_time_passes(30_000)
            .then_sends([("release/0", release("tea"))]);
        assert_eq!(s.awaiting(), ["release/0"]);
    }

    #[test]
    fn a_command_with_no_answer_is_resent_then_compensated() {
        let retry = RetryPolicy {
            initial_ms: 1_000,
            max_ms: 4_000,
            max_attempts: 3,
        };
        let mut s = saga::<OrderFulfilment>("o-1").with_policy(Policy {
            retry,
            ..Policy::default()
        });
        s.when_event(placed(&[("tea", 2)]));
        s.when_accepted("reserve/0");
        // Not due yet.
        s.when_time_passes(999).then_ignored();
        // Sent again after 1 s, then after 2 s more (same command id: idempotent at the account).
        s.when_time_passes(1).then_sends([]);
        assert_eq!(s.resent(), 1);
        s.when_time_passes(2_000).then_sends([]);
        assert_eq!(s.resent(), 1);
        assert_eq!(s.instance().pending[0].attempts, 3);
        // Then given up after 4 s: compensated as if it had succeeded (void, release, cancel).
        s.when_time_passes(3_999).then_ignored();
        s.when_time_passes(1)
            .then_sends([("void", void())])
            .then_at(Status::Compensating, "void_payment");
    }

    #[test]
    fn a_compensation_with_no_answer_is_sent_until_answered() {
        let retry = RetryPolicy {
            initial_ms: 1_000,
            max_ms: 1_000,
            max_attempts: 1,
        };
        let mut s = saga::<OrderFulfilment>("o-1").with_policy(Policy {
            retry,
            ..Policy::default()
        });
        s.when_event(placed(&[("tea", 2)]));
        s.when_rejected("reserve/0", "insufficient_stock");
        assert_eq!(s.awaiting(), ["cancel"]);
        for _ in 0..3 {
            s.when_time_passes(1_000);
            assert_eq!(s.awaiting(), ["cancel"]);
            assert_eq!(s.status(), Status::Compensating);
        }
        s.when_accepted("cancel")
            .then_at(Status::Compensated, "cancelled");
    }

    #[test]
    fn once_the_confirmation_is_sent_the_deadline_no_longer_applies() {
        let retry = RetryPolicy {
            initial_ms: 1_000,
            max_ms: 1_000,
            max_attempts: 2,
        };
        let mut s = reserved_both().with_policy(Policy {
            retry,
            ..Policy::default()
        });
        s.when_accepted("authorize");
        assert!(
            s.instance().timers.is_empty(),
            "cleared with the confirmation"
        );
        // No answer to the confirmation: it is sent again, never compensated (it may be late, not lost).
        s.when_time_passes(1_000);
        assert_eq!(s.resent(), 1);
        s.when_time_passes(1_000)
            .then_sends([("confirm", confirm())])
            .then_at(Status::Running, "confirm_order");
        s.when_time_passes(3_600_000);
        assert!(s.fired().is_empty());
        assert_eq!(s.status(), Status::Running);
        s.when_accepted("confirm")
            .then_sends([("capture", capture())]);
    }

    /// A command sent more than once and rejected may still be applied later (a resend out of the
    /// aggregate's idempotency window): its compensation is sent too.
    #[test]
    fn a_rejection_after_resends_is_compensated_as_possibly_done() {
        let retry = RetryPolicy {
            initial_ms: 1_000,
            max_ms: 1_000,
            max_attempts: 5,
        };
        let policy = Policy {
            retry,
            ..Policy::default()
        };
        let mut s = saga::<OrderFulfilment>("o-1").with_policy(policy);
        s.when_event(placed(&[("tea", 2), ("mug", 1)]));
        s.when_accepted("reserve/0");
        s.when_time_passes(1_000);
        assert_eq!(s.resent(), 1);
        s.when_rejected("reserve/1", "insufficient_stock")
            .then_sends([("release/1", release("mug"))]);
        s.when_accepted("release/1")
            .then_sends([("release/0", release("tea"))]);

        // Sent under the default policy: again after 5 s.
        let mut s = reserved_both();
        s.when_time_passes(5_000);
        assert_eq!(s.resent(), 1);
        s.when_rejected("authorize", "insufficient_funds")
            .then_sends([("void", void())]);
    }

    #[test]
    fn a_capture_refused_is_a_failure_for_an_operator() {
        let mut s = reserved_both();
        s.when_accepted("authorize");
        s.when_accepted("confirm");
        s.when_rejected("capture", "no_hold")
            .then_at(Status::Failed, "failed");
        assert!(!s.instance().is_open());
    }

    #[test]
    fn a_second_start_and_other_events_are_ignored() {
        let mut s = saga::<OrderFulfilment>("o-1");
        s.when_event(placed(&[("tea", 2)]));
        s.when_event(placed(&[("tea", 2)])).then_ignored();
        let confirmed = OrderEvent::Confirmed(crate::contracts::order::OrderConfirmed::default());
        s.when_event(confirmed).then_ignored();
        assert_eq!(OrderFulfilment::saga_id(&placed(&[])), Some("o-1".into()));
    }

    #[test]
    fn the_history_says_what_happened_when() {
        let mut s = saga::<OrderFulfilment>("o-1");
        s.when_event(placed(&[("tea", 2)]));
        s.when_time_passes(10).then_ignored();
        s.when_rejected("reserve/0", "insufficient_stock");
        let steps: Vec<(&str, &str)> = s
            .instance()
            .history
            .iter()
            .map(|e| (e.step.as_str(), e.what.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                ("reserve_stock", "event"),
                (
                    "cancel_order",
                    "reserve/0: rejected insufficient_stock: rejected in a test"
                )
            ]
        );
        assert_eq!(s.instance().step_since, s.now());
    }
}
