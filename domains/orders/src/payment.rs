//! The Payment aggregate, one per account: opened, funded, then payments are authorised (a hold on the
//! available balance), captured (taken) or voided (released). The balance never goes below zero and
//! holds never exceed it.

use std::collections::BTreeMap;

use causeway_core::{Aggregate, Rejection};
use serde::{Deserialize, Serialize};

use crate::contracts::payment::{
    AccountOpened, AuthorizePayment, CapturePayment, Deposit, FundsDeposited, OpenAccount,
    PaymentAuthorized, PaymentCaptured, PaymentVoided, VoidPayment,
};

/// Commands of an account.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// Open it.
    Open(OpenAccount),
    /// Add funds.
    Deposit(Deposit),
    /// Hold funds for an order.
    Authorize(AuthorizePayment),
    /// Take held funds.
    Capture(CapturePayment),
    /// Release held funds.
    Void(VoidPayment),
}

/// Events of an account.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentEvent {
    /// Opened.
    Opened(AccountOpened),
    /// Funds added.
    Deposited(FundsDeposited),
    /// Funds held.
    Authorized(PaymentAuthorized),
    /// Held funds taken.
    Captured(PaymentCaptured),
    /// Held funds released.
    Voided(PaymentVoided),
}

/// The state of one account (the `state` of its changelog record, `AccountState.avsc`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Opened, with its currency.
    pub currency: Option<String>,
    /// Funds in the account, held ones included, in minor units.
    pub balance_cents: i64,
    /// Held amounts, by payment id.
    pub holds: BTreeMap<String, i64>,
}

impl Account {
    /// Balance not held by any payment.
    pub fn available_cents(&self) -> i64 {
        self.balance_cents - self.holds.values().sum::<i64>()
    }
}

/// The largest balance an account may hold, in minor units (keeps every sum inside `i64`).
pub const MAX_BALANCE_CENTS: i64 = 1_000_000_000_000_000;

fn reject(code: &'static str, reason: impl Into<String>) -> Result<Vec<PaymentEvent>, Rejection> {
    Err(Rejection::new(code, reason))
}

impl Aggregate for Account {
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    const TYPE: &'static str = "payment";

    fn handle(&self, command: &PaymentCommand) -> Result<Vec<PaymentEvent>, Rejection> {
        if let PaymentCommand::Open(c) = command {
            if self.currency.is_some() {
                return reject("already_open", format!("account {} is open", c.account_id));
            }
            if c.currency.len() != 3 || !c.currency.chars().all(|ch| ch.is_ascii_uppercase()) {
                return reject(
                    "invalid_currency",
                    format!("{:?} is not an ISO 4217 currency code", c.currency),
                );
            }
            return Ok(vec![PaymentEvent::Opened(AccountOpened {
                account_id: c.account_id.clone(),
                currency: c.currency.clone(),
                ..AccountOpened::default()
            })]);
        }
        if self.currency.is_none() {
            return reject("not_found", "the account is not open");
        }
        match command {
            PaymentCommand::Open(_) => reject("already_open", "the account is open"),
            PaymentCommand::Deposit(c) => {
                if c.amount_cents < 1 {
                    return reject("invalid_amount", "deposit at least 1");
                }
                let balance = self
                    .balance_cents
                    .checked_add(c.amount_cents)
                    .filter(|b| *b <= MAX_BALANCE_CENTS)
                    .ok_or_else(|| {
                        Rejection::new(
                            "invalid_amount",
                            "the balance would exceed the account's limit",
                        )
                    })?;
                Ok(vec![PaymentEvent::Deposited(FundsDeposited {
                    account_id: c.account_id.clone(),
                    amount_cents: c.amount_cents,
                    balance_cents: balance,
                    ..FundsDeposited::default()
                })])
            }
            PaymentCommand::Authorize(c) => {
                if c.amount_cents < 1 {
                    return reject("invalid_amount", "authorise at least 1");
                }
                if self.holds.contains_key(&c.payment_id) {
                    return reject(
                        "duplicate_payment",
                        format!("payment {} is already authorised", c.payment_id),
                    );
                }
                let available = self.available_cents();
                if c.amount_cents > available {
                    return reject(
                        "insufficient_funds",
                        format!("{} requested, {available} available", c.amount_cents),
                    );
                }
                Ok(vec![PaymentEvent::Authorized(PaymentAuthorized {
                    account_id: c.account_id.clone(),
                    payment_id: c.payment_id.clone(),
                    order_id: c.order_id.clone(),
                    amount_cents: c.amount_cents,
                    available_cents: available - c.amount_cents,
                    ..PaymentAuthorized::default()
                })])
            }
            PaymentCommand::Capture(c) => match self.holds.get(&c.payment_id) {
                Some(amount) => Ok(vec![PaymentEvent::Captured(PaymentCaptured {
                    account_id: c.account_id.clone(),
                    payment_id: c.payment_id.clone(),
                    amount_cents: *amount,
                    balance_cents: self.balance_cents - amount,
                    ..PaymentCaptured::default()
                })]),
                None => reject(
                    "no_authorization",
                    format!("payment {} is not authorised", c.payment_id),
                ),
            },
            PaymentCommand::Void(c) => match self.holds.get(&c.payment_id) {
                Some(amount) => Ok(vec![PaymentEvent::Voided(PaymentVoided {
                    account_id: c.account_id.clone(),
                    payment_id: c.payment_id.clone(),
                    amount_cents: *amount,
                    available_cents: self.available_cents() + amount,
                    ..PaymentVoided::default()
                })]),
                None => reject(
                    "no_authorization",
                    format!("payment {} is not authorised", c.payment_id),
                ),
            },
        }
    }

    fn apply(mut self, event: &PaymentEvent) -> Self {
        match event {
            PaymentEvent::Opened(e) => self.currency = Some(e.currency.clone()),
            PaymentEvent::Deposited(e) => self.balance_cents = e.balance_cents,
            PaymentEvent::Authorized(e) => {
                self.holds.insert(e.payment_id.clone(), e.amount_cents);
            }
            PaymentEvent::Captured(e) => {
                self.holds.remove(&e.payment_id);
                self.balance_cents = e.balance_cents;
            }
            PaymentEvent::Voided(e) => {
                self.holds.remove(&e.payment_id);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_testkit::given;

    fn opened() -> PaymentEvent {
        PaymentEvent::Opened(AccountOpened {
            account_id: "a".into(),
            currency: "EUR".into(),
            ..AccountOpened::default()
        })
    }
    fn deposited(amount: i64, balance: i64) -> PaymentEvent {
        PaymentEvent::Deposited(FundsDeposited {
            account_id: "a".into(),
            amount_cents: amount,
            balance_cents: balance,
            ..FundsDeposited::default()
        })
    }
    fn authorize(payment: &str, amount: i64) -> PaymentCommand {
        PaymentCommand::Authorize(AuthorizePayment {
            account_id: "a".into(),
            payment_id: payment.into(),
            order_id: "o-1".into(),
            amount_cents: amount,
            ..AuthorizePayment::default()
        })
    }
    fn authorized(payment: &str, amount: i64, available: i64) -> PaymentEvent {
        PaymentEvent::Authorized(PaymentAuthorized {
            account_id: "a".into(),
            payment_id: payment.into(),
            order_id: "o-1".into(),
            amount_cents: amount,
            available_cents: available,
            ..PaymentAuthorized::default()
        })
    }

    #[test]
    fn open_deposit_authorize_capture() {
        given::<Account>([])
            .when(PaymentCommand::Open(OpenAccount {
                account_id: "a".into(),
                currency: "EUR".into(),
                ..OpenAccount::default()
            }))
            .then([opened()]);
        given::<Account>([opened()])
            .when(PaymentCommand::Deposit(Deposit {
                account_id: "a".into(),
                amount_cents: 1000,
                ..Deposit::default()
            }))
            .then([deposited(1000, 1000)]);
        given::<Account>([opened(), deposited(1000, 1000)])
            .when(authorize("p1", 600))
            .then([authorized("p1", 600, 400)]);
        let state = given::<Account>([opened(), deposited(1000, 1000), authorized("p1", 600, 400)])
            .when(PaymentCommand::Capture(CapturePayment {
                account_id: "a".into(),
                payment_id: "p1".into(),
                ..CapturePayment::default()
            }))
            .then([PaymentEvent::Captured(PaymentCaptured {
                account_id: "a".into(),
                payment_id: "p1".into(),
                amount_cents: 600,
                balance_cents: 400,
                ..PaymentCaptured::default()
            })]);
        assert_eq!((state.balance_cents, state.available_cents()), (400, 400));
    }

    #[test]
    fn void_releases_the_hold() {
        let state = given::<Account>([opened(), deposited(1000, 1000), authorized("p1", 600, 400)])
            .when(PaymentCommand::Void(VoidPayment {
                account_id: "a".into(),
                payment_id: "p1".into(),
                ..VoidPayment::default()
            }))
            .then([PaymentEvent::Voided(PaymentVoided {
                account_id: "a".into(),
                payment_id: "p1".into(),
                amount_cents: 600,
                available_cents: 1000,
                ..PaymentVoided::default()
            })]);
        assert_eq!((state.balance_cents, state.available_cents()), (1000, 1000));
    }

    #[test]
    fn never_overdrawn() {
        given::<Account>([opened(), deposited(1000, 1000)])
            .when(authorize("p1", 1001))
            .then_rejected("insufficient_funds");
        given::<Account>([opened(), deposited(1000, 1000), authorized("p1", 600, 400)])
            .when(authorize("p2", 401))
            .then_rejected("insufficient_funds");
        given::<Account>([opened(), deposited(1000, 1000), authorized("p1", 600, 400)])
            .when(authorize("p1", 1))
            .then_rejected("duplicate_payment");
        given::<Account>([])
            .when(authorize("p1", 1))
            .then_rejected("not_found");
        given::<Account>([opened()])
            .when(authorize("p1", 0))
            .then_rejected("invalid_amount");
        given::<Account>([opened(), deposited(MAX_BALANCE_CENTS, MAX_BALANCE_CENTS)])
            .when(PaymentCommand::Deposit(Deposit {
                account_id: "a".into(),
                amount_cents: 1,
                ..Deposit::default()
            }))
            .then_rejected("invalid_amount");
        given::<Account>([opened()])
            .when(PaymentCommand::Capture(CapturePayment {
                account_id: "a".into(),
                payment_id: "nope".into(),
                ..CapturePayment::default()
            }))
            .then_rejected("no_authorization");
    }
}
