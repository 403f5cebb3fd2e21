//! The reprocessor against the real stack, with projector-redis as the consumer that dead-letters:
//! poison events are indexed, shown decoded (secrets redacted), replayed after their cause is fixed
//! (applied once), stopped by the loop guard when they keep failing, left alone by a dry run, discarded,
//! and every action is on the audit topic. Without a token: 401. The CLI drives the same API.
#![allow(dead_code)]

mod common;
#[path = "../../projector-redis/tests/common/events.rs"]
mod events;
mod projector;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_contracts::upcast::Upcasters;
use causeway_kafka::config::OffsetMode;
use causeway_testcontainers::process::run_to_exit;
use causeway_testcontainers::unique;
use common::*;
use events::*;
use projector::start_projector;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

fn letter_of_key<'a>(letters: &'a [Value], key: &str) -> &'a Value {
    letters
        .iter()
        .find(|l| l["key"] == key)
        .unwrap_or_else(|| panic!("no letter with key {key}: {letters:?}"))
}

/// The end offset of `topic`'s partition 0.
fn end_offset(world: &World, topic: &str) -> i64 {
    let consumer: BaseConsumer = world
        .kafka
        .consumer_config("test-end", &unique("end"), OffsetMode::Transactional)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"))
        .1
}

/// Every audit record that names one of `ids`, decoded.
async fn audit_records(world: &World, ids: &[String], at_least: usize) -> Vec<Value> {
    let consumer: BaseConsumer = world
        .kafka
        .consumer_config("test-audit", &unique("audit"), OffsetMode::Transactional)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .subscribe(&[AUDIT_TOPIC])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < at_least && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Some(bytes) = m.payload() else { continue };
        let decoded = world
            .codec
            .decode_value(bytes, &Upcasters::default())
            .await
            .unwrap_or_else(|e| panic!("an audit record does not decode: {e}"));
        assert_eq!(decoded.full_name, "causeway.DeadLetterAction");
        let v = Value::try_from(decoded.value).unwrap_or_else(|e| panic!("{e}"));
        let named = v["letters"].as_array().is_some_and(|ls| {
            ls.iter()
                .any(|l| ids.iter().any(|id| l["letter_id"] == *id))
        });
        if named {
            out.push(v);
        }
    }
    out
}

fn cli(args: &[&str], api: SocketAddr, token: Option<&str>) -> (i32, String, String) {
    let mut command = std::process::Command::new(workspace_bin("causeway"));
    command
        .args(args)
        .env("CAUSEWAY_DLQ_URL", format!("http://{api}"))
        .env_remove("CAUSEWAY_DLQ_TOKEN");
    if let Some(t) = token {
        command.env("CAUSEWAY_DLQ_TOKEN", t);
    }
    let (status, stdout, stderr) =
        run_to_exit(&mut command, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    (status.code().unwrap_or(-1), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_inspected_replayed_once_fixed_stopped_by_the_loop_guard_and_audited() {
    let world = World::new(1).await;
    provision(&world.kafka, &[]).await;
    let topic = world.topic("inventory");
    // Three SKUs, one event each. The documents of sku-0 and sku-1 are clobbered (a string where the
    // projector keeps a hash): its script refuses them, and both events are dead-lettered.
    let (records, expected) = inventory_events(&world, 3, 1).await;
    let mut redis = redis_connection(&world.stack.redis_url).await;
    // projector-redis's key of a document (generation 1: no rebuild here).
    let doc_key = |sku: &str| format!("{}:stock-by-sku:g1:doc:{sku}", world.prefix);
    for sku in ["sku-0", "sku-1"] {
        let _: () = redis::cmd("SET")
            .arg(doc_key(sku))
            .arg("clobbered")
            .query_async(&mut redis)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // sku-1's event carries a trace and a secret in its headers.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let producer = world.producer_handle();
    for (key, bytes) in &records {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some(traceparent),
            })
            .insert(Header {
                key: "x-api-token",
                value: Some("s3cr3t-value"),
            });
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(key.as_str())
                    .payload(bytes.as_slice())
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    let projector = start_projector(&world, &[]);
    let r = start(
        Path::new(env!("CARGO_BIN_EXE_dlq-reprocessor")),
        &world.stack,
        &pattern_for(&world.context),
        2,
        &[],
    );
    let api = r.api;
    let group = world.group.clone();

    // Without a token, or with a wrong one: 401, and nothing is said about the letters.
    for token in [None, Some("not-a-token-of-this-service")] {
        for (method, path) in [
            ("GET", "/v1/dead-letters".to_string()),
            ("GET", "/v1/dead-letters/counts".to_string()),
            ("POST", "/v1/dead-letters/x:0:0/replay".to_string()),
            ("POST", "/v1/dead-letters/replay".to_string()),
            ("GET", "/v1/history/order/o-1".to_string()),
            ("GET", "/v1/correlations/c-1".to_string()),
            ("GET", "/v1/whoami".to_string()),
        ] {
            let (status, body) = call_as(api, token, method, &path, None);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert!(body["error"].is_string(), "{body}");
        }
    }

    // A record whose header name is not UTF-8 (rdkafka panics reading one): dead-lettered by the
    // projector, indexed and shown by the reprocessor, neither of them down.
    produce_with_binary_header_name(
        &world.stack.kafka_bootstrap,
        &topic,
        "odd-header",
        "not avro",
    );
    let odd = wait_letters(api, &format!("group={group}&key=odd-header"), 1);
    let (status, shown) = call(
        api,
        "GET",
        &format!(
            "/v1/dead-letters/{}",
            odd[0]["id"].as_str().unwrap_or_default()
        ),
        None,
    );
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["record"]["value"]["bytes"], 8, "{shown}");
    assert!(
        shown["record"]["value"]["hex"].is_string(),
        "raw bytes when it does not decode: {shown}"
    );
    let (status, discarded) = call(
        api,
        "POST",
        &format!(
            "/v1/dead-letters/{}/discard",
            odd[0]["id"].as_str().unwrap_or_default()
        ),
        None,
    );
    assert_eq!(status, 200, "{discarded}");

    // Both poison events are indexed, parked, with where they came from and why.
    let parked = wait_letters(api, &format!("group={group}&state=parked"), 2);
    let first0 = letter_of_key(&parked, "sku-0").clone();
    let first1 = letter_of_key(&parked, "sku-1").clone();
    for l in [&first0, &first1] {
        assert_eq!(l["class"], "poison");
        assert_eq!(l["source"]["topic"], topic.as_str());
        assert_eq!(l["source"]["partition"], 0);
        assert_eq!(l["replays"], 0);
        assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(
            l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("WRONGTYPE")),
            "{l}"
        );
    }
    let id0 = first0["id"].as_str().unwrap_or_default().to_string();
    let id1 = first1["id"].as_str().unwrap_or_default().to_string();

    // Inspect: the payload decoded through the registry; the secret header redacted.
    let (status, shown) = call(api, "GET", &format!("/v1/dead-letters/{id1}"), None);
    assert_eq!(status, 200, "{shown}");
    let value = &shown["record"]["value"];
    assert_eq!(
        value["schema"], "causeway.orders.inventory.StockAdded",
        "{shown}"
    );
    assert_eq!(value["decoded"]["sku"], "sku-1", "{shown}");
    let headers: HashMap<String, String> = shown["record"]["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            (
                h["name"].as_str().unwrap_or_default().to_string(),
                h["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        headers.get("x-api-token").map(String::as_str),
        Some("<redacted>")
    );
    assert_eq!(
        headers.get("traceparent").map(String::as_str),
        Some(traceparent)
    );
    assert!(!shown.to_string().contains("s3cr3t-value"), "{shown}");
    let (status, body) = call(api, "GET", "/v1/dead-letters/nope:0:0", None);
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(api, "GET", "/v1/dead-letters?state=lost", None);
    assert_eq!(status, 400, "{body}");
    // A misspelt dry run is refused, not taken for a replay.
    let (status, body) = call(
        api,
        "POST",
        &format!("/v1/dead-letters/{id1}/replay?dryrun=true"),
        None,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        api,
        "POST",
        &format!("/v1/dead-letters/{id1}/replay"),
        Some("{\"dry_run\": true}"),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(api, "GET", "/v1/dead-letters?cursor=nonsense", None);
    assert_eq!(status, 400, "{body}");
    // Paging one at a time gives every letter once, newest first, as one page does.
    let (_, whole) = call(
        api,
        "GET",
        &format!("/v1/dead-letters?group={group}&limit=500"),
        None,
    );
    let whole: Vec<Value> = whole["letters"].as_array().cloned().unwrap_or_default();
    let mut paged: Vec<Value> = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = call(
            api,
            "GET",
            &format!("/v1/dead-letters?group={group}&limit=1{cursor}"),
            None,
        );
        assert_eq!(status, 200, "{page}");
        paged.extend(page["letters"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
        assert!(paged.len() <= whole.len(), "paging repeats letters");
    }
    let ids = |ls: &[Value]| -> Vec<String> {
        ls.iter()
            .filter_map(|l| l["id"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(ids(&paged), ids(&whole));

    // Without its audit topic the reprocessor acts on nothing (an action it could not record).
    let no_audit = format!("{}.no-audit", world.context);
    let unaudited = start(
        Path::new(env!("CARGO_BIN_EXE_dlq-reprocessor")),
        &world.stack,
        &pattern_for(&world.context),
        2,
        &[("CAUSEWAY__DLQ__AUDIT_TOPIC", no_audit.as_str())],
    );
    wait_letters(unaudited.api, &format!("group={group}&key=sku-1"), 1);
    let (status, refused) = call(
        unaudited.api,
        "POST",
        &format!("/v1/dead-letters/{id1}/discard"),
        None,
    );
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("nothing was done")),
        "{refused}"
    );
    drop(unaudited);

    // A dry run says what would happen and changes nothing: no record sent, still parked.
    let end = end_offset(&world, &topic);
    let (status, dry) = call(
        api,
        "POST",
        &format!("/v1/dead-letters/{id1}/replay?dry_run=true"),
        None,
    );
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["letters"][0]["outcome"], "would replay", "{dry}");
    assert!(dry["action_id"].is_null(), "{dry}");
    let (status, dry) = call(
        api,
        "POST",
        "/v1/dead-letters/replay",
        Some(&format!(
            "{{\"filter\": {{\"group\": \"{group}\"}}, \"dry_run\": true}}"
        )),
    );
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["counts"]["would replay"], 2, "{dry}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(end_offset(&world, &topic), end, "a dry run sent nothing");
    assert_eq!(
        wait_letters(api, &format!("group={group}&state=parked"), 2).len(),
        2
    );

    // sku-0 keeps failing: each replay comes back as a new dead letter, one more replay on it, until
    // the loop guard (2 here) refuses.
    let mut current = id0.clone();
    for n in 1..=2 {
        let (status, done) = call(
            api,
            "POST",
            &format!("/v1/dead-letters/{current}/replay"),
            None,
        );
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["letters"][0]["outcome"], "replayed", "{done}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let next = loop {
            let (_, page) = call(
                api,
                "GET",
                &format!("/v1/dead-letters?group={group}&key=sku-0&state=parked"),
                None,
            );
            let letters = page["letters"].as_array().cloned().unwrap_or_default();
            if let Some(l) = letters.first() {
                break l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the replay of {current} did not come back"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(next["replays"], n, "{next}");
        assert_eq!(next["replay_of"], current.as_str(), "{next}");
        current = next["id"].as_str().unwrap_or_default().to_string();
    }
    let end_before_guard = end_offset(&world, &topic);
    let (status, guarded) = call(
        api,
        "POST",
        &format!("/v1/dead-letters/{current}/replay"),
        None,
    );
    assert_eq!(status, 409, "{guarded}");
    assert_eq!(guarded["letters"][0]["outcome"], "refused", "{guarded}");
    assert!(
        guarded["letters"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("loop guard")),
        "{guarded}"
    );
    assert_eq!(end_offset(&world, &topic), end_before_guard);
    // Given up on: discarded, and then neither replayed nor discarded again.
    let (status, discarded) = call(
        api,
        "POST",
        &format!("/v1/dead-letters/{current}/discard"),
        None,
    );
    assert_eq!(status, 200, "{discarded}");
    assert_eq!(discarded["letters"][0]["outcome"], "discarded");
    let (status, again) = call(
        api,
        "POST",
        &format!("/v1/dead-letters/{current}/replay"),
        None,
    );
    assert_eq!(status, 409, "{again}");

    // sku-1's cause is fixed (the clobbered key removed); replayed by filter through the CLI, it is
    // applied, once: the document is exactly the reference one, and one record went to the source.
    let _: () = redis::cmd("DEL")
        .arg(doc_key("sku-1"))
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, _, stderr) = cli(&["dlq", "list", "--group", &group], api, None);
    assert_eq!(
        code, 2,
        "without a token the CLI says how to give one: {stderr}"
    );
    assert!(stderr.contains("CAUSEWAY_DLQ_TOKEN"), "{stderr}");
    let (code, table, stderr) = cli(
        &["dlq", "list", "--group", &group, "--state", "parked"],
        api,
        Some(TOKEN),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(table.contains(&id1) && table.contains("sku-1"), "{table}");
    let (code, shown, stderr) = cli(&["dlq", "show", &id1], api, Some(TOKEN));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        shown.contains("causeway.orders.inventory.StockAdded") && shown.contains("<redacted>"),
        "{shown}"
    );
    let before = end_offset(&world, &topic);
    let (code, out, stderr) = cli(
        &["dlq", "replay", "--group", &group, "--key", "sku-1"],
        api,
        Some(TOKEN),
    );
    assert_eq!(code, 0, "{out}{stderr}");
    assert!(out.contains("1 replayed"), "{out}");
    assert_eq!(
        end_offset(&world, &topic),
        before + 1,
        "one record replayed"
    );
    for sku in ["sku-1", "sku-2"] {
        let doc = &expected[sku];
        let mut want: HashMap<String, String> = doc
            .fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        want.insert("_version".into(), doc.version.to_string());
        want.insert("_event_time".into(), doc.event_time_ms.to_string());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stored: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(doc_key(sku))
                .query_async(&mut redis)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if stored == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{sku}: {stored:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A second replay of the same letter is refused: it is replayed already.
    let (code, _, stderr) = cli(&["dlq", "replay", &id1], api, Some(TOKEN));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(end_offset(&world, &topic), before + 1);
    std::thread::sleep(Duration::from_secs(2));
    let (_, page) = call(
        api,
        "GET",
        &format!("/v1/dead-letters?group={group}&state=parked"),
        None,
    );
    assert_eq!(
        page["letters"].as_array().map(Vec::len),
        Some(0),
        "nothing failed again: {page}"
    );

    // Every action is on the audit topic, by the token's holder: sku-0's two replays, the one the loop
    // guard refused, its discard and the replay refused after it; sku-1's replay and the refused
    // second one.
    let (_, all) = call(api, "GET", &format!("/v1/dead-letters?group={group}"), None);
    let ids: Vec<String> = all["letters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["id"].as_str().map(str::to_string))
        .collect();
    let actions = audit_records(&world, &ids, 8).await;
    let summary: Vec<(String, String)> = actions
        .iter()
        .map(|a| {
            assert_eq!(a["operator"], "tester", "{a}");
            (
                a["action"].as_str().unwrap_or_default().to_string(),
                a["letters"][0]["outcome"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let count = |action: &str, outcome: &str| {
        summary
            .iter()
            .filter(|(a, o)| a == action && o.starts_with(outcome))
            .count()
    };
    assert_eq!(count("REPLAY", "replayed"), 3, "{summary:?}");
    assert_eq!(count("REPLAY", "refused"), 3, "{summary:?}");
    assert_eq!(count("DISCARD", "discarded"), 2, "{summary:?}");
    assert_eq!(actions.len(), 8, "{summary:?}");
    let by_filter = actions
        .iter()
        .find(|a| a["filter"].is_string())
        .unwrap_or_else(|| panic!("the replay by filter names its filter: {actions:?}"));
    assert!(
        by_filter["filter"]
            .as_str()
            .is_some_and(|f| f.contains("sku-1"))
    );

    // Metrics: what was indexed, replayed, discarded and refused; nothing parked now.
    let (_, metrics) = r.process.get("/metrics").unwrap_or_else(|e| panic!("{e}"));
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        line(&format!(
            "causeway_dlq_letters_total{{class=\"poison\",group=\"{group}\"}}"
        )),
        "5"
    );
    assert_eq!(
        line(&format!(
            "causeway_dlq_replays_total{{group=\"{group}\",trigger=\"operator\"}}"
        )),
        "3"
    );
    assert_eq!(
        line(&format!("causeway_dlq_discards_total{{group=\"{group}\"}}")),
        "2"
    );
    assert_eq!(
        line(&format!(
            "causeway_dlq_loop_guard_total{{group=\"{group}\"}}"
        )),
        "1"
    );
    wait_metric(
        &r.process,
        &format!("causeway_dlq_depth_records{{group=\"{group}\"}} 0"),
    );
    drop(projector);
}

/// The documents of `skus` in projector-redis's keys, as the reference semantics give them.
async fn wait_stock(
    redis: &mut redis::aio::MultiplexedConnection,
    doc_key: &dyn Fn(&str) -> String,
    expected: &std::collections::BTreeMap<String, causeway_core::projection::Document>,
    skus: &[&str],
) {
    for sku in skus {
        let doc = &expected[*sku];
        let mut want: HashMap<String, String> = doc
            .fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        want.insert("_version".into(), doc.version.to_string());
        want.insert("_event_time".into(), doc.event_time_ms.to_string());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stored: Result<HashMap<String, String>, _> = redis::cmd("HGETALL")
                .arg(doc_key(sku))
                .query_async(redis)
                .await;
            if stored.as_ref().is_ok_and(|s| *s == want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{sku}: {stored:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_per_key_order_a_parked_key_waits_and_follows_in_order_and_a_transient_failure_is_redriven()
 {
    use causeway_orders::contracts::OrderLine;
    use causeway_orders::contracts::order::OrderPlaced;
    use causeway_testcontainers::faulty::{FaultyProxy, Mode};

    let world = World::new(1).await;
    let parked_topic = format!("{}.parked", world.group);
    provision(&world.kafka, &[&parked_topic]).await;
    let topic = world.topic("inventory");
    // Five events for each of two SKUs, in version order.
    let (records, expected) = inventory_events(&world, 2, 5).await;
    let of = |v: usize| -> Vec<(String, Vec<u8>)> { records[(v - 1) * 2..v * 2].to_vec() };
    let mut redis = redis_connection(&world.stack.redis_url).await;
    let doc_key = |sku: &str| format!("{}:stock-by-sku:g1:doc:{sku}", world.prefix);
    let _: () = redis::cmd("SET")
        .arg(doc_key("sku-0"))
        .arg("clobbered")
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The registry behind a proxy, to fail it later.
    let registry_addr: SocketAddr = world
        .stack
        .registry_url
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultyProxy::start(registry_addr).unwrap_or_else(|e| panic!("{e}"));
    let proxy_url = proxy.url();
    let projector = start_projector(
        &world,
        &[
            ("CAUSEWAY__PROJECTOR__REGISTRY_URL", proxy_url.as_str()),
            ("CAUSEWAY__CONSUMER__PARK_KEYS", "true"),
            ("CAUSEWAY__CONSUMER__DEAD_LETTER_TRANSIENT_AFTER", "2"),
            ("CAUSEWAY__CONSUMER__RETRY_INITIAL_MS", "50"),
            ("CAUSEWAY__CONSUMER__RETRY_MAX_MS", "200"),
        ],
    );
    let r = start(
        Path::new(env!("CARGO_BIN_EXE_dlq-reprocessor")),
        &world.stack,
        &pattern_for(&world.context),
        3,
        &[
            ("CAUSEWAY__REDRIVE__INITIAL_MS", "500"),
            ("CAUSEWAY__REDRIVE__EVERY_MS", "200"),
        ],
    );
    let api = r.api;
    let group = world.group.clone();

    // sku-0's first event is refused (its key clobbered): the head; its next three wait behind it
    // while sku-1 flows on to its fourth version. The second comes in the head's batch (it waits
    // although it was prepared already), the third and fourth once the head is parked.
    let mut first_two = of(1);
    first_two.extend(of(2));
    world.send(&topic, &first_two).await;
    wait_letters(api, &format!("group={group}&key=sku-0&class=poison"), 1);
    for v in 3..=4 {
        world.send(&topic, &of(v)).await;
    }
    let mut at_four = expected.clone();
    {
        let (r4, e4) = inventory_events(&world, 2, 4).await;
        drop(r4);
        at_four.insert("sku-1".into(), e4["sku-1"].clone());
    }
    wait_stock(&mut redis, &doc_key, &at_four, &["sku-1"]).await;
    let letters = wait_letters(api, &format!("group={group}&key=sku-0&state=parked"), 4);
    let head = letters
        .iter()
        .find(|l| l["class"] == "poison")
        .unwrap_or_else(|| panic!("no head among {letters:?}"))
        .clone();
    let behind: Vec<&Value> = letters.iter().filter(|l| l["class"] == "parked").collect();
    assert_eq!(behind.len(), 3, "{letters:?}");
    for l in &behind {
        assert_eq!(l["behind"], head["source"]["offset"], "{l}");
    }
    // The reprocessor counts the records waiting behind a head.
    wait_metric(&r.process, "causeway_dlq_parked_behind_records 3");
    let stored: String = redis::cmd("GET")
        .arg(doc_key("sku-0"))
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored, "clobbered", "nothing of sku-0 applied meanwhile");
    // A record behind the head cannot be replayed on its own.
    let follower = behind[0]["id"].as_str().unwrap_or_default();
    let (status, refused) = call(
        api,
        "POST",
        &format!("/v1/dead-letters/{follower}/replay"),
        None,
    );
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["letters"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("waits behind")),
        "{refused}"
    );

    // The cause fixed, the head replayed: the head and the three behind it are applied in their order
    // (the document is the reference one only if every event was applied, oldest first).
    let _: () = redis::cmd("DEL")
        .arg(doc_key("sku-0"))
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head_id = head["id"].as_str().unwrap_or_default();
    let (status, done) = call(
        api,
        "POST",
        &format!("/v1/dead-letters/{head_id}/replay"),
        None,
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["counts"]["replayed"], 1, "{done}");
    assert_eq!(done["counts"]["released"], 3, "{done}");
    let mut at_four_both = at_four.clone();
    {
        let (_, e4) = inventory_events(&world, 2, 4).await;
        at_four_both.insert("sku-0".into(), e4["sku-0"].clone());
    }
    wait_stock(&mut redis, &doc_key, &at_four_both, &["sku-0"]).await;
    // The key is free again: its fifth event is applied as it comes.
    world.send(&topic, &of(5)).await;
    wait_stock(&mut redis, &doc_key, &expected, &["sku-0", "sku-1"]).await;
    let (_, page) = call(
        api,
        "GET",
        &format!("/v1/dead-letters?group={group}&state=parked"),
        None,
    );
    assert_eq!(page["letters"].as_array().map(Vec::len), Some(0), "{page}");

    // A transient failure (the registry answering 503 to a schema not seen yet) is dead-lettered as
    // transient after two tries and redriven by the reprocessor once the registry is back: no operator.
    proxy.set(Mode::Answer {
        status: 503,
        body: r#"{"error_code":50301,"message":"unavailable"}"#.into(),
    });
    let order_topic = world.topic("order");
    let placed = OrderPlaced {
        metadata: metadata("order-t", 1),
        order_id: "order-t".into(),
        customer_id: "c".into(),
        lines: vec![OrderLine {
            sku: "sku-0".into(),
            quantity: 1,
            unit_price_cents: 100,
        }],
        currency: "EUR".into(),
        payment_account_id: "acc".into(),
        total_cents: 100,
    };
    let bytes = encode(&world, &order_topic, "OrderPlaced", &placed).await;
    world.send(&order_topic, &[("order-t".into(), bytes)]).await;
    let transient = wait_letters(api, &format!("group={group}&class=transient"), 1);
    assert_eq!(transient[0]["key"], "order-t");
    assert!(
        transient[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("registry")),
        "{transient:?}"
    );
    proxy.set(Mode::Pass);
    let order_key = format!("{}:order-by-id:g1:doc:order-t", world.prefix);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let version: Option<String> = redis::cmd("HGET")
            .arg(&order_key)
            .arg("_version")
            .query_async(&mut redis)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if version.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transient letter was never redriven"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, shown) = call(
        api,
        "GET",
        &format!(
            "/v1/dead-letters/{}",
            transient[0]["id"].as_str().unwrap_or_default()
        ),
        None,
    );
    assert_eq!(shown["letter"]["state"], "replayed", "{shown}");
    assert_eq!(shown["letter"]["state_by"], "redrive", "{shown}");
    let ids = vec![transient[0]["id"].as_str().unwrap_or_default().to_string()];
    let actions = audit_records(&world, &ids, 1).await;
    assert_eq!(actions[0]["action"], "REDRIVE", "{actions:?}");
    assert_eq!(actions[0]["operator"], "redrive", "{actions:?}");
    wait_metric(&r.process, "causeway_dlq_parked_behind_records 0");
    let (_, metrics) = projector.get("/metrics").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("causeway_consumer_parked_keys{{group=\"{group}\"}} 0")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_done_leave_the_index_after_keep_done_hours() {
    let world = World::new(1).await;
    provision(&world.kafka, &[]).await;
    let topic = world.topic("inventory");
    world
        .send(&topic, &[("gone-soon".to_string(), b"not avro".to_vec())])
        .await;
    let _projector = start_projector(&world, &[]);
    let r = start(
        Path::new(env!("CARGO_BIN_EXE_dlq-reprocessor")),
        &world.stack,
        &pattern_for(&world.context),
        2,
        &[
            ("CAUSEWAY__DLQ__KEEP_DONE_HOURS", "0"),
            ("CAUSEWAY__REDRIVE__EVERY_MS", "200"),
            // No history here: only the dead letters' keys are looked at.
            ("CAUSEWAY__HISTORY__RESULTS_TOPIC", ""),
        ],
    );
    let group = world.group.clone();
    let letter = wait_letters(r.api, &format!("group={group}"), 1);
    let id = letter[0]["id"].as_str().unwrap_or_default().to_string();
    // Parked: kept however old.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = call(r.api, "GET", &format!("/v1/dead-letters/{id}"), None);
    assert_eq!(status, 200);
    let (status, body) = call(
        r.api,
        "POST",
        &format!("/v1/dead-letters/{id}/discard"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    // Done: gone from the index, every set with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = call(r.api, "GET", &format!("/v1/dead-letters/{id}"), None);
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the discarded letter stayed in the index"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, page) = call(
        r.api,
        "GET",
        &format!("/v1/dead-letters?group={group}"),
        None,
    );
    assert_eq!(page["letters"].as_array().map(Vec::len), Some(0), "{page}");
    let mut redis = redis_connection(&world.stack.redis_url).await;
    let mut left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", r.prefix))
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    left.sort();
    let expect_only = ["groups", "parked-by-class"];
    assert!(
        left.iter()
            .all(|k| expect_only.iter().any(|e| k.ends_with(&format!(":{e}")))),
        "keys left: {left:?}"
    );
}
