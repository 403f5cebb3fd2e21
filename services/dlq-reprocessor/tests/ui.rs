//! The web UI in headless Chromium (Debian's, driven by playwright-core from testcontainers/browser):
//! without a token its page is the sign-in form (401); signed in, it lists a dead letter, shows its
//! decoded payload, replays it through a confirmation and the list updates; an aggregate's event
//! history shows its events in order. The session cookie alone cannot act (the UI's header is needed).
#![allow(dead_code)]

mod common;
#[path = "../../projector-redis/tests/common/events.rs"]
mod events;
mod projector;

use std::path::Path;
use std::time::Duration;

use causeway_testcontainers::process::{http_request_with, run_to_exit};
use common::*;
use events::*;
use projector::start_projector;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_lists_shows_replays_and_tells_an_aggregates_history_in_headless_chromium() {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testcontainers/browser/dlq-ui.mjs");
    let modules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testcontainers/browser/node_modules/playwright-core");
    assert!(
        modules.exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Debian's chromium and playwright-core in testcontainers/browser: make setup"
    );
    let world = World::new(1).await;
    provision(&world.kafka, &[]).await;
    let topic = world.topic("inventory");
    let (records, _) = inventory_events(&world, 2, 3).await;
    let mut redis = redis_connection(&world.stack.redis_url).await;
    let doc_key = format!("{}:stock-by-sku:g1:doc:sku-0", world.prefix);
    let _: () = redis::cmd("SET")
        .arg(&doc_key)
        .arg("clobbered")
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    world.send(&topic, &records).await;
    let _projector = start_projector(&world, &[]);
    let r = start(
        Path::new(env!("CARGO_BIN_EXE_dlq-reprocessor")),
        &world.stack,
        &pattern_for(&world.context),
        3,
        &[("CAUSEWAY__HISTORY__CONTEXT", world.context.as_str())],
    );
    let group = world.group.clone();
    wait_letters(r.api, &format!("group={group}&state=parked"), 3);
    let _: () = redis::cmd("DEL")
        .arg(&doc_key)
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The session cookie alone does not act: the UI's header is needed.
    let (_, page) = call(
        r.api,
        "GET",
        &format!("/v1/dead-letters?group={group}"),
        None,
    );
    let some = page["letters"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cookie = format!(
        "causeway_dlq={}",
        TOKEN
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let forged = http_request_with(
        r.api,
        "POST",
        &format!("/v1/dead-letters/{some}/replay"),
        &[("Cookie", cookie.as_str())],
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forged.status, 403, "{}", forged.body);
    let (status, body) = call_as(r.api, None, "GET", "/", None);
    assert_eq!(status, 401, "{body}");

    let (status, stdout, stderr) = run_to_exit(
        std::process::Command::new("node").args([
            script.to_string_lossy().as_ref(),
            &format!("http://{}/", r.api),
            TOKEN,
            "sku-0",
            "inventory",
            "sku-1",
        ]),
        Duration::from_secs(180),
    )
    .unwrap_or_else(|e| panic!("node: {e}"));
    let seen: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert!(status.success(), "{seen:#}\n{stderr}");
    assert_eq!(seen["unauthenticated_status"], 401, "{seen:#}");
    assert!(
        seen["who"].as_str().is_some_and(|w| w.contains("tester")),
        "{seen:#}"
    );
    assert!(
        seen["counts"]
            .as_str()
            .is_some_and(|c| c.contains("3poison")),
        "{seen:#}"
    );
    assert!(
        seen["payload"]
            .as_str()
            .is_some_and(|p| p.contains("\"sku\": \"sku-0\"")),
        "the payload decoded: {seen:#}"
    );
    assert!(
        seen["payload_note"]
            .as_str()
            .is_some_and(|p| p.contains("causeway.orders.inventory.")),
        "{seen:#}"
    );
    assert!(
        seen["headers"]
            .as_str()
            .is_some_and(|h| h.contains("causeway.dlq.reason")),
        "{seen:#}"
    );
    assert!(
        seen["dialog"]
            .as_str()
            .is_some_and(|d| d.starts_with("Replay")),
        "{seen:#}"
    );
    assert_eq!(seen["row_gone"], true);
    assert_eq!(
        seen["versions"],
        serde_json::json!(["1", "2", "3"]),
        "{seen:#}"
    );
    assert_eq!(
        seen["types"],
        serde_json::json!(["StockAdded", "StockReserved", "StockReserved"]),
        "{seen:#}"
    );
    assert_eq!(
        seen["after_cancel"], 1,
        "a cancelled discard changes nothing: {seen:#}"
    );
    assert!(
        seen["discard_dialog"]
            .as_str()
            .is_some_and(|d| d.starts_with("Discard")),
        "{seen:#}"
    );
    let discarded = seen["discarded_id"].as_str().unwrap_or_default();
    let (_, shown) = call(r.api, "GET", &format!("/v1/dead-letters/{discarded}"), None);
    assert_eq!(shown["letter"]["state"], "discarded", "{shown}");
    // What the browser did is what the index says.
    let id = seen["letter_id"].as_str().unwrap_or_default();
    let (_, shown) = call(r.api, "GET", &format!("/v1/dead-letters/{id}"), None);
    assert_eq!(shown["letter"]["state"], "replayed", "{shown}");
    assert_eq!(shown["letter"]["state_by"], "tester", "{shown}");
}
