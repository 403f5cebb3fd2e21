//! OrderFulfilment end to end: the aggregate processor and the orchestrator as processes on the real
//! Kafka and registry. A placed order is reserved, paid, confirmed and captured; a line out of stock
//! releases what was reserved and cancels; a declined payment releases every line and cancels; a
//! reply that never comes (the payment aggregate not running) is retried, then compensated, and the
//! compensation lands once the payment aggregate is back.

#[path = "../../aggregate-processor/tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use serde_json::json;

use causeway_orders::contracts::OrderLine;
use causeway_orders::contracts::inventory::AddStock;
use causeway_orders::contracts::order::PlaceOrder;
use causeway_orders::contracts::payment::{Deposit, OpenAccount};
use support::{World, accounts, start_orchestrator, stock, wait_done};

async fn add_stock(world: &World, sku: &str, quantity: i32) {
    let id = format!("add-{sku}");
    world
        .send(
            "inventory",
            "AddStock",
            sku,
            &AddStock {
                command_id: id,
                sku: sku.into(),
                quantity,
                ..AddStock::default()
            },
        )
        .await;
}

async fn open_account(world: &World, account: &str, cents: i64) {
    world
        .send(
            "payment",
            "OpenAccount",
            account,
            &OpenAccount {
                command_id: format!("open-{account}"),
                account_id: account.into(),
                currency: "EUR".into(),
                ..OpenAccount::default()
            },
        )
        .await;
    world
        .send(
            "payment",
            "Deposit",
            account,
            &Deposit {
                command_id: format!("deposit-{account}"),
                account_id: account.into(),
                amount_cents: cents,
                ..Deposit::default()
            },
        )
        .await;
}

async fn place(world: &World, order: &str, account: &str, lines: &[(&str, i32, i64)]) {
    world
        .send(
            "order",
            "PlaceOrder",
            order,
            &PlaceOrder {
                command_id: format!("place-{order}"),
                order_id: order.into(),
                customer_id: "alice".into(),
                lines: lines
                    .iter()
                    .map(|(sku, quantity, price)| OrderLine {
                        sku: (*sku).into(),
                        quantity: *quantity,
                        unit_price_cents: *price,
                    })
                    .collect(),
                currency: "EUR".into(),
                payment_account_id: account.into(),
                ..PlaceOrder::default()
            },
        )
        .await;
}

/// The status of each order, from its changelog.
async fn orders(world: &World) -> std::collections::BTreeMap<String, String> {
    let states: std::collections::BTreeMap<
        String,
        causeway_contracts::records::StateRecord<causeway_orders::order::Order>,
    > = support::latest(world, &world.topic("order", "changelog")).await;
    states
        .into_iter()
        .map(|(k, v)| (k, format!("{:?}", v.state.status)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_out_of_stock_and_declined_end_to_end() {
    let world = World::new(2).await;
    let processor = world.start_processor("p1");
    add_stock(&world, "tea", 10).await;
    add_stock(&world, "mug", 1).await;
    open_account(&world, "rich", 100_000).await;
    open_account(&world, "poor", 1).await;
    // Placed before the saga was first deployed: history, not its business.
    place(&world, "o-before", "rich", &[("tea", 1, 450)]).await;
    world.wait_results(7, Duration::from_secs(30));
    let orchestrator = start_orchestrator(&world, "s1", &[]);

    place(&world, "o-ok", "rich", &[("tea", 2, 450)]).await;
    place(
        &world,
        "o-nostock",
        "rich",
        &[("tea", 1, 450), ("mug", 2, 1200)],
    )
    .await;
    place(&world, "o-declined", "poor", &[("tea", 1, 450)]).await;
    let sagas = wait_done(
        &world,
        &["o-ok", "o-nostock", "o-declined"],
        Duration::from_secs(60),
    )
    .await;

    let status = |id: &str| (sagas[id].status.as_str(), sagas[id].step.as_str());
    assert_eq!(status("o-ok"), ("completed", "confirmed"));
    assert_eq!(status("o-nostock"), ("compensated", "cancelled"));
    assert_eq!(status("o-declined"), ("compensated", "cancelled"));
    let reason = |id: &str| sagas[id].state.reason.clone().unwrap_or_default();
    assert!(
        reason("o-nostock").starts_with("mug: insufficient_stock"),
        "{}",
        reason("o-nostock")
    );
    assert!(
        reason("o-declined").starts_with("payment: insufficient_funds"),
        "{}",
        reason("o-declined")
    );
    // The history says what happened, step by step, with times.
    let steps: Vec<&str> = sagas["o-nostock"]
        .history
        .iter()
        .map(|h| h.step.as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "reserve_stock",
            "reserve_stock",
            "release_stock",
            "cancel_order",
            "cancelled"
        ],
        "{:?}",
        sagas["o-nostock"].history
    );
    assert!(
        sagas["o-nostock"]
            .history
            .windows(2)
            .all(|w| w[0].at <= w[1].at)
    );

    // What an operator sees.
    let (code, shown) = support::cli(&world, &["show", "o-nostock"]);
    assert_eq!(code, 0, "{shown}");
    for expected in [
        "o-nostock: compensated, step cancelled",
        "awaiting: nothing",
        "reserve/1: rejected insufficient_stock",
        "release_stock",
        "\"reason\":\"mug: insufficient_stock",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in:\n{shown}");
    }
    let (code, listed) = support::cli(&world, &["list", "--status", "compensated"]);
    assert_eq!(code, 0, "{listed}");
    assert!(
        listed.contains("o-nostock") && listed.contains("o-declined"),
        "{listed}"
    );
    assert!(!listed.contains("o-ok"), "{listed}");
    let (code, json) = support::cli(&world, &["list", "--json"]);
    assert_eq!(code, 0, "{json}");
    let json: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(json["matched"], 3, "only the orders placed since: {json}");
    let (code, none) = support::cli(&world, &["stuck", "--longer-than", "0s"]);
    assert_eq!(
        (code, none.trim()),
        (0, "no instance in one step for 0 ms or longer")
    );
    let (code, missing) = support::cli(&world, &["show", "o-unknown"]);
    assert_eq!(code, 2);
    assert!(missing.contains("no instance \"o-unknown\""), "{missing}");
    let (code, other) = support::cli(&world, &["list", "--saga", "inventory"]);
    assert_eq!(code, 2, "{other}");
    assert!(other.contains("is not a saga's changelog"), "{other}");
    let (code, nowhere) = support::cli(&world, &["list", "--saga", "refund"]);
    assert_eq!(code, 2, "{nowhere}");
    assert!(
        nowhere.contains("refund.changelog does not exist"),
        "{nowhere}"
    );
    let (code, bad) = support::cli(&world, &["list", "--status", "sleeping"]);
    assert_eq!(code, 2);
    assert!(bad.contains("unknown status \"sleeping\""), "{bad}");

    assert!(!sagas.contains_key("o-before"), "{:?}", sagas.keys());
    let orders = orders(&world).await;
    assert_eq!(orders["o-before"], "Placed");
    assert_eq!(orders["o-ok"], "Confirmed");
    assert_eq!(orders["o-nostock"], "Cancelled");
    assert_eq!(orders["o-declined"], "Cancelled");
    // Stock: only the confirmed order holds a reservation; everything else was given back.
    let stock = stock(&world).await;
    assert_eq!(stock["tea"].state.available, 8);
    assert_eq!(
        stock["tea"].state.reservations,
        [("o-ok".to_string(), 2)].into_iter().collect()
    );
    assert_eq!(stock["mug"].state.available, 1);
    assert!(stock["mug"].state.reservations.is_empty());
    // Money: the confirmed order was captured, the declined one held nothing.
    let accounts = accounts(&world).await;
    assert_eq!(accounts["rich"].state.balance_cents, 100_000 - 900);
    assert!(accounts["rich"].state.holds.is_empty());
    assert_eq!(accounts["poor"].state.balance_cents, 1);
    assert!(accounts["poor"].state.holds.is_empty());

    orchestrator
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    processor
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The payment aggregate is not running: the authorisation is never answered. It is sent again with
/// backoff, then given up; the saga compensates (void, release, cancel), and once the payment
/// aggregate runs, the authorisation and its void land in that order: no money stays held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_never_comes_is_retried_then_compensated() {
    silent_payment(
        &[
            ("CAUSEWAY__SAGAS__RETRY_INITIAL_MS", "500"),
            ("CAUSEWAY__SAGAS__RETRY_MAX_MS", "1000"),
            ("CAUSEWAY__SAGAS__RETRY_MAX_ATTEMPTS", "3"),
        ],
        "authorize: no answer",
        false,
    )
    .await;
}

/// The same, but the fulfilment deadline passes first (retries would go on far longer), and the
/// orchestrator is killed (SIGKILL) while the deadline is pending: its successor restores the deadline
/// from the changelog and fires it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_fires_after_a_crash_once_then_compensates() {
    silent_payment(
        &[
            ("CAUSEWAY__SAGAS__RETRY_INITIAL_MS", "1000"),
            ("CAUSEWAY__SAGAS__RETRY_MAX_MS", "1000"),
            ("CAUSEWAY__SAGAS__RETRY_MAX_ATTEMPTS", "1000"),
            ("CAUSEWAY__SAGAS__DEADLINES_MS__fulfilment", "6000"),
        ],
        "deadline fulfilment passed",
        true,
    )
    .await;
}

/// An order placed while the payment aggregate is not running, with the orchestrator under `config`:
/// the saga gives up (its history says `gave_up`) and compensates; once the payment aggregate runs, the
/// compensation lands and nothing stays reserved or held. With `crash`, the orchestrator is killed while
/// the authorisation waits and a new one takes over.
async fn silent_payment(config: &[(&'static str, &str)], gave_up: &str, crash: bool) {
    let world = World::new(1).await;
    let without_payment = world.start_processor_with(
        "p1",
        &[(
            "CAUSEWAY__PROCESSOR__AGGREGATES",
            r#"["order", "inventory"]"#,
        )],
    );
    let mut orchestrator = start_orchestrator(&world, "s1", config);
    add_stock(&world, "tea", 5).await;
    open_account(&world, "acc", 10_000).await;
    place(&world, "o-silent", "acc", &[("tea", 2, 100)]).await;

    let mut killed_at = 0;
    if crash {
        let s = wait_for(&world, "o-silent", |s| s.step == "authorize_payment").await;
        assert_eq!(
            s.timers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["fulfilment"],
            "the deadline is pending when the orchestrator is killed"
        );
        orchestrator.kill().unwrap_or_else(|e| panic!("{e}"));
        killed_at = now_ms();
        orchestrator = start_orchestrator(&world, "s1", config);
    }
    // Given up on the payment: compensating, the void awaiting the payment aggregate too.
    let s = wait_for(&world, "o-silent", |s| s.status == "compensating").await;
    assert_eq!(s.step, "void_payment", "{:?}", s.history);
    assert!(
        s.history.iter().any(|h| h.what == gave_up),
        "{:?}",
        s.history
    );
    if crash {
        let fired = s
            .history
            .iter()
            .find(|h| h.what == gave_up)
            .map_or(0, |h| h.at);
        assert!(
            fired > killed_at,
            "fired at {fired}, before the kill at {killed_at}"
        );
    } else {
        // Sent three times in all (the same command id), then given up.
        let id = "order-fulfilment/o-silent/authorize";
        let sends = world
            .read_all(&world.topic("payment", "commands"))
            .await
            .into_iter()
            .filter(|r| {
                r.record.as_ref().is_some_and(|(_, v)| {
                    matches!(v, apache_avro::types::Value::Record(f)
                        if f.iter().any(|(k, v)| k == "command_id"
                            && *v == apache_avro::types::Value::String(id.into())))
                })
            })
            .count();
        assert_eq!(sends, 3, "AuthorizePayment {id} sent {sends} times");
    }
    // Stuck: compensating, waiting on the payment aggregate.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (code, stuck) = support::cli(&world, &["stuck", "--longer-than", "1s", "--json"]);
    assert_eq!(code, 0, "{stuck}");
    let stuck: serde_json::Value =
        serde_json::from_str(&stuck).unwrap_or_else(|e| panic!("{e}: {stuck}"));
    let first = &stuck["instances"][0];
    assert_eq!(
        (
            &first["saga_id"],
            &first["step"],
            &first["pending"][0]["key"]
        ),
        (&json!("o-silent"), &json!("void_payment"), &json!("void")),
        "{stuck}"
    );
    let payment = world.start_processor_with(
        "p2",
        &[("CAUSEWAY__PROCESSOR__AGGREGATES", r#"["payment"]"#)],
    );
    let sagas = wait_done(&world, &["o-silent"], Duration::from_secs(60)).await;
    let saga = &sagas["o-silent"];
    assert_eq!(saga.status, "compensated");
    let fired = saga
        .history
        .iter()
        .filter(|h| h.what.starts_with("deadline "))
        .count();
    assert_eq!(
        i32::try_from(fired).unwrap_or(-1),
        saga.deadlines_fired,
        "{:?}",
        saga.history
    );
    assert!(saga.deadlines_fired <= 1, "{:?}", saga.history);
    let orders = orders(&world).await;
    assert_eq!(orders["o-silent"], "Cancelled");
    let stock = stock(&world).await;
    assert_eq!(stock["tea"].state.available, 5);
    assert!(stock["tea"].state.reservations.is_empty());
    let accounts = accounts(&world).await;
    assert_eq!(accounts["acc"].state.balance_cents, 10_000);
    assert!(
        accounts["acc"].state.holds.is_empty(),
        "{:?}",
        accounts["acc"].state
    );
    for p in [orchestrator, payment, without_payment] {
        p.terminate(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Wait until saga `id` satisfies `f` (at most a minute); returns it.
async fn wait_for(
    world: &World,
    id: &str,
    f: impl Fn(
        &causeway_contracts::records::SagaRecord<causeway_orders::fulfilment::OrderFulfilment>,
    ) -> bool,
) -> causeway_contracts::records::SagaRecord<causeway_orders::fulfilment::OrderFulfilment> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = support::sagas(world).await;
        if let Some(s) = all.remove(id)
            && f(&s)
        {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "saga {id} never got there: {:?}",
            all.get(id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An order whose saga state would be larger than the changelog takes (a SKU of 400 KB, kept in the
/// state three times): that input is dead-lettered with its reason, and the orders beside it go on.
/// Without the per-input check, every batch holding it would fail for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_whose_saga_state_cannot_be_written_is_dead_lettered_alone() {
    let world = World::new(1).await;
    let processor = world.start_processor("p1");
    let orchestrator = start_orchestrator(&world, "s1", &[]);
    add_stock(&world, "tea", 10).await;
    open_account(&world, "acc", 100_000).await;
    let huge = "s".repeat(400_000);
    place(&world, "o-huge", "acc", &[(&huge, 1, 100)]).await;
    place(&world, "o-fine", "acc", &[("tea", 1, 100)]).await;
    let sagas = wait_done(&world, &["o-fine"], Duration::from_secs(60)).await;
    assert_eq!(sagas["o-fine"].status, "completed");
    assert!(!sagas.contains_key("o-huge"));
    let dlq = format!("{}.dlq", support::group(&world));
    let letters = world.read_raw(&dlq);
    assert_eq!(letters.len(), 1, "one dead letter");
    let reason = letters[0]
        .headers
        .iter()
        .find(|(k, _)| k == "causeway.dlq.reason")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("the state of o-huge would be") && reason.contains("takes at most"),
        "{reason}"
    );
    assert_eq!(letters[0].key.as_deref(), Some("o-huge"));
    for p in [orchestrator, processor] {
        p.terminate(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
