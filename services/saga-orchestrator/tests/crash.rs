//! Exactly once through crashes: 10,000 orders over 40 SKUs and 200 accounts (enough stock and money for
//! some, not all), with the orchestrator and the aggregate processor each killed by SIGKILL three times
//! mid-run and restarted, and a fulfilment deadline short enough to fire under the load. Afterwards:
//! every order is Confirmed or Cancelled, by exactly one terminal event; no saga is left open; no
//! deadline fired twice (over every state an instance had); once a third of the confirmed orders are
//! shipped (their reservations committed), the stock on hand plus the reserved equals what was added
//! less what was committed, and only confirmed orders not shipped hold reservations, each exactly its
//! lines; money is conserved: every confirmed order captured once for its total and no other, every
//! account holds its deposit less what was captured from it, nothing held.

#[path = "../../aggregate-processor/tests/common/mod.rs"]
mod common;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use causeway_orders::contracts::OrderLine;
use causeway_orders::contracts::inventory::{AddStock, CommitReservation};
use causeway_orders::contracts::order::PlaceOrder;
use causeway_orders::contracts::payment::{Deposit, OpenAccount, PaymentCaptured};
use causeway_orders::order::OrderStatus;
use causeway_testcontainers::process::ServiceProcess;
use support::{World, accounts, sagas, start_orchestrator, stock};

const ORDERS: usize = 10_000;
const SKUS: usize = 40;
const STOCK: i32 = 400;
const ACCOUNTS: usize = 200;
const DEPOSIT: i64 = 40_000;

/// A small deterministic generator (the same load on every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The orchestrator's settings for the run: retries that outlast a restart, a deadline that fires
/// under the load for some orders.
const SAGA_CONFIG: [(&str, &str); 4] = [
    ("CAUSEWAY__SAGAS__RETRY_INITIAL_MS", "4000"),
    ("CAUSEWAY__SAGAS__RETRY_MAX_MS", "15000"),
    ("CAUSEWAY__SAGAS__RETRY_MAX_ATTEMPTS", "30"),
    ("CAUSEWAY__SAGAS__DEADLINES_MS__fulfilment", "15000"),
];

/// (open instances, done instances) the orchestrator holds, from its metrics.
fn progress(orchestrator: &ServiceProcess) -> Option<(i64, i64)> {
    let (status, body) = orchestrator.get("/metrics").ok()?;
    if status != 200 {
        return None;
    }
    let (mut open, mut done) = (0, 0);
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("causeway_saga_instances{") else {
            continue;
        };
        let value: i64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as i64);
        if rest.contains("status=\"running\"") || rest.contains("status=\"compensating\"") {
            open += value;
        } else {
            done += value;
        }
    }
    Some((open, done))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_orders_through_sigkills_end_consistent() {
    let world = World::new(4).await;
    let started = Instant::now();
    let mut processor = world.start_processor("a");
    let adds: Vec<(&str, String, AddStock)> = (0..SKUS)
        .map(|s| {
            let sku = format!("sku-{s}");
            (
                "AddStock",
                sku.clone(),
                AddStock {
                    command_id: format!("add-{sku}"),
                    sku,
                    quantity: STOCK,
                    ..AddStock::default()
                },
            )
        })
        .collect();
    world.send_many("inventory", &adds).await;
    let opens: Vec<(&str, String, OpenAccount)> = (0..ACCOUNTS)
        .map(|a| {
            let account = format!("acc-{a}");
            (
                "OpenAccount",
                account.clone(),
                OpenAccount {
                    command_id: format!("open-{account}"),
                    account_id: account,
                    currency: "EUR".into(),
                    ..OpenAccount::default()
                },
            )
        })
        .collect();
    world.send_many("payment", &opens).await;
    let deposits: Vec<(&str, String, Deposit)> = (0..ACCOUNTS)
        .map(|a| {
            let account = format!("acc-{a}");
            (
                "Deposit",
                account.clone(),
                Deposit {
                    command_id: format!("deposit-{account}"),
                    account_id: account,
                    amount_cents: DEPOSIT,
                    ..Deposit::default()
                },
            )
        })
        .collect();
    world.send_many("payment", &deposits).await;
    world.wait_results(SKUS + 2 * ACCOUNTS, Duration::from_secs(120));
    let mut orchestrator = start_orchestrator(&world, "a", &SAGA_CONFIG);

    let mut rng = Lcg(7);
    let mut placed: BTreeMap<String, PlaceOrder> = BTreeMap::new();
    let orders: Vec<(&str, String, PlaceOrder)> = (0..ORDERS)
        .map(|i| {
            let order = format!("o-{i}");
            let lines = (0..=rng.below(3))
                .map(|_| OrderLine {
                    sku: format!("sku-{}", rng.below(SKUS as u64)),
                    quantity: 1 + rng.below(3) as i32,
                    unit_price_cents: 100 + rng.below(900) as i64,
                })
                .collect();
            let place = PlaceOrder {
                command_id: format!("place-{order}"),
                order_id: order.clone(),
                customer_id: "alice".into(),
                lines,
                currency: "EUR".into(),
                payment_account_id: format!("acc-{}", rng.below(ACCOUNTS as u64)),
                ..PlaceOrder::default()
            };
            placed.insert(order.clone(), place.clone());
            ("PlaceOrder", order, place)
        })
        .collect();
    world.send_many("order", &orders).await;
    eprintln!("{ORDERS} orders sent after {:?}", started.elapsed());

    // Kill each three times, turn about, while sagas are open.
    let mut in_flight = 0;
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(2_500));
        let open = progress(&orchestrator).map_or(0, |(open, _)| open);
        if open > 0 {
            in_flight += 1;
        }
        if round % 2 == 0 {
            let status = orchestrator.kill().unwrap_or_else(|e| panic!("{e}"));
            assert!(!status.success(), "killed, not exited: {status:?}");
            eprintln!(
                "orchestrator killed ({open} open) after {:?}",
                started.elapsed()
            );
            orchestrator = start_orchestrator(&world, "a", &SAGA_CONFIG);
        } else {
            let status = processor.kill().unwrap_or_else(|e| panic!("{e}"));
            assert!(!status.success(), "killed, not exited: {status:?}");
            eprintln!(
                "processor killed ({open} open) after {:?}",
                started.elapsed()
            );
            processor = world.start_processor("a");
        }
    }
    assert!(
        in_flight >= 3,
        "only {in_flight} of 6 kills found sagas open: the load ran out too early to test anything"
    );

    // Until every instance is done.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let seen = progress(&orchestrator);
        if let Some((open, done)) = seen
            && open == 0
            && done == i64::try_from(ORDERS).unwrap_or(0)
        {
            break;
        }
        for (name, p) in [
            ("orchestrator", &mut orchestrator),
            ("processor", &mut processor),
        ] {
            if let Some(status) = p.try_exit().unwrap_or_else(|e| panic!("{e}")) {
                panic!("the {name} exited ({status}):\n{}", p.log());
            }
        }
        assert!(
            Instant::now() < deadline,
            "not done in 15 minutes: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("every saga done after {:?}", started.elapsed());

    // No saga open, none fired its deadline twice.
    let sagas = sagas(&world).await;
    assert_eq!(sagas.len(), ORDERS);
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    for (id, s) in &sagas {
        assert!(
            matches!(s.status.as_str(), "completed" | "compensated") && s.pending.is_empty(),
            "{id}: {} at {} awaiting {:?}",
            s.status,
            s.step,
            s.pending.iter().map(|p| &p.key).collect::<Vec<_>>()
        );
        assert!(s.timers.is_empty(), "{id}: {:?}", s.timers);
        assert!(s.deadlines_fired <= 1, "{id}: {:?}", s.history);
        *outcomes.entry(s.status.as_str()).or_default() += 1;
        if s.deadlines_fired == 1 {
            *outcomes.entry("by the deadline").or_default() += 1;
        }
    }
    eprintln!("outcomes: {outcomes:?}");
    assert!(
        outcomes.get("completed").is_some_and(|n| *n > 0)
            && outcomes.get("compensated").is_some_and(|n| *n > 0)
            && outcomes.get("by the deadline").is_some_and(|n| *n > 0),
        "every outcome, the deadline's included: {outcomes:?}"
    );
    // Every state an instance ever had (the changelog before compaction): a deadline that fired twice
    // would show two fires at different times.
    let mut fires: HashMap<String, std::collections::BTreeSet<i64>> = HashMap::new();
    for r in world
        .read_all(&world.topic("order-fulfilment", "changelog"))
        .await
    {
        let (Some(key), Some((_, value))) = (r.key, r.record) else {
            continue;
        };
        let record: causeway_contracts::records::SagaRecord<
            causeway_orders::fulfilment::OrderFulfilment,
        > = apache_avro::from_value(&value).unwrap_or_else(|e| panic!("{key}: {e}"));
        let at = fires.entry(key).or_default();
        at.extend(
            record
                .history
                .iter()
                .filter(|h| h.what.starts_with("deadline "))
                .map(|h| h.at),
        );
    }
    for (id, at) in &fires {
        assert!(at.len() <= 1, "{id}: the deadline fired at {at:?}");
    }
    assert_eq!(
        fires.values().filter(|at| !at.is_empty()).count(),
        outcomes.get("by the deadline").copied().unwrap_or(0)
    );

    // Every order terminal, by exactly one terminal event, agreeing with its saga.
    let mut terminal: HashMap<String, Vec<String>> = HashMap::new();
    for r in world.read_all(&world.topic("order", "events")).await {
        let (Some(key), Some((name, _))) = (r.key, r.record) else {
            continue;
        };
        if name.ends_with("OrderConfirmed") || name.ends_with("OrderCancelled") {
            terminal.entry(key).or_default().push(name);
        }
    }
    let states: BTreeMap<
        String,
        causeway_contracts::records::StateRecord<causeway_orders::order::Order>,
    > = support::latest(&world, &world.topic("order", "changelog")).await;
    let mut confirmed_total: HashMap<String, i64> = HashMap::new();
    let mut expected_reserved: HashMap<(String, String), i32> = HashMap::new();
    for (id, place) in &placed {
        let events = terminal.get(id).cloned().unwrap_or_default();
        assert_eq!(events.len(), 1, "{id}: terminal events {events:?}");
        let status = states[id].state.status;
        let saga = sagas[id].status.as_str();
        match status {
            OrderStatus::Confirmed => {
                assert_eq!(saga, "completed", "{id}");
                *confirmed_total
                    .entry(place.payment_account_id.clone())
                    .or_default() += states[id].state.total_cents;
                for line in &place.lines {
                    *expected_reserved
                        .entry((line.sku.clone(), id.clone()))
                        .or_default() += line.quantity;
                }
            }
            OrderStatus::Cancelled => assert_eq!(saga, "compensated", "{id}"),
            other => panic!("{id} ends {other:?}"),
        }
    }

    // Ship a third of the confirmed orders: their reservations are committed (CommitReservation, as a
    // warehouse would send it), so that the stock's balance has all its terms.
    let mut shipped: HashMap<String, i32> = HashMap::new();
    let mut commits: Vec<(&str, String, CommitReservation)> = Vec::new();
    for ((sku, order), quantity) in &expected_reserved {
        let n: usize = order[2..].parse().unwrap_or(0);
        if !n.is_multiple_of(3) {
            continue;
        }
        *shipped.entry(sku.clone()).or_default() += quantity;
        commits.push((
            "CommitReservation",
            sku.clone(),
            CommitReservation {
                command_id: format!("ship-{order}-{sku}"),
                sku: sku.clone(),
                order_id: order.clone(),
                ..CommitReservation::default()
            },
        ));
    }
    let results_before = world.read_raw(&world.results_topic).len();
    world.send_many("inventory", &commits).await;
    world.wait_results(results_before + commits.len(), Duration::from_secs(300));
    for p in [orchestrator, processor] {
        let status = p
            .terminate(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success(), "{status:?}");
    }

    // Stock: on hand plus reserved is what was added less what was committed; only confirmed orders
    // not shipped hold a reservation, exactly their lines.
    let stock = stock(&world).await;
    for s in 0..SKUS {
        let sku = format!("sku-{s}");
        let inventory = &stock[&sku].state;
        let reserved: i32 = inventory.reservations.values().sum();
        let committed = shipped.get(&sku).copied().unwrap_or(0);
        assert_eq!(
            inventory.available + reserved,
            STOCK - committed,
            "{sku}: {inventory:?}"
        );
        for (order, quantity) in &inventory.reservations {
            assert_eq!(
                expected_reserved.get(&(sku.clone(), order.clone())),
                Some(quantity),
                "{sku} holds {quantity} for {order}, which is not confirmed with that many"
            );
        }
    }
    let held: usize = stock.values().map(|s| s.state.reservations.len()).sum();
    assert_eq!(held, expected_reserved.len() - commits.len());

    // Money: every confirmed order captured once, for its total, and no other; each account holds its
    // deposit less what was captured from it, nothing held; the deposits are all accounted for.
    let mut captured: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for r in world.read_all(&world.topic("payment", "events")).await {
        let (Some(account), Some((name, value))) = (r.key, r.record) else {
            continue;
        };
        if name.ends_with("PaymentCaptured") {
            let e: PaymentCaptured =
                apache_avro::from_value(&value).unwrap_or_else(|e| panic!("{e}"));
            captured
                .entry(e.payment_id.clone())
                .or_default()
                .push((account, e.amount_cents));
        }
    }
    let mut taken: HashMap<String, i64> = HashMap::new();
    for (id, place) in &placed {
        let captures = captured.remove(id).unwrap_or_default();
        if states[id].state.status == OrderStatus::Confirmed {
            assert_eq!(
                captures,
                [(
                    place.payment_account_id.clone(),
                    states[id].state.total_cents
                )],
                "{id}"
            );
            *taken.entry(place.payment_account_id.clone()).or_default() +=
                states[id].state.total_cents;
        } else {
            assert!(
                captures.is_empty(),
                "{id} was cancelled yet captured: {captures:?}"
            );
        }
    }
    assert!(captured.is_empty(), "captures of no order: {captured:?}");
    assert_eq!(taken, confirmed_total);
    let accounts = accounts(&world).await;
    let mut total = 0;
    for a in 0..ACCOUNTS {
        let account = format!("acc-{a}");
        let state = &accounts[&account].state;
        assert!(state.holds.is_empty(), "{account}: {state:?}");
        let spent = taken.get(&account).copied().unwrap_or(0);
        assert_eq!(state.balance_cents, DEPOSIT - spent, "{account}");
        total += state.balance_cents + spent;
    }
    assert_eq!(total, DEPOSIT * i64::try_from(ACCOUNTS).unwrap_or(0));
    eprintln!("verified after {:?}", started.elapsed());
}
