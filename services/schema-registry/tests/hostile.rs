//! A registry no request can freeze: a compatibility check of a schema whose types nest 30 levels deep,
//! each with two fields of the type below (2^30 paths to the bottom, changed at the bottom), answers
//! (409 / incompatible) instead of running for hours, and reads keep answering meanwhile. The check runs
//! with no lock on the store, each pair of types is compared once, and the work is bounded (422 past it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use causeway_testcontainers::process::http_request;
use causeway_testcontainers::{stack, unique};
use serde_json::{Value, json};

fn deep(levels: usize, bottom: &str) -> String {
    let mut text =
        format!(r#"{{"type":"record","name":"T0","fields":[{{"name":"v","type":"{bottom}"}}]}}"#);
    for k in 1..=levels {
        text = format!(
            r#"{{"type":"record","name":"T{k}","fields":[{{"name":"a","type":{text}}},{{"name":"b","type":"T{}"}}]}}"#,
            k - 1
        );
    }
    text
}

fn call(api: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    let r = http_request(api, method, path, text.as_deref())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::String(r.body)),
    )
}

#[test]
fn a_thirty_level_check_answers_while_reads_go_on() {
    let api: SocketAddr = stack()
        .registry_url
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let subject = unique("deep");
    let (status, registered) = call(
        api,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(json!({ "schema": deep(30, "int") })),
    );
    assert_eq!(status, 200, "{registered}");
    let id = registered["id"].as_i64().unwrap_or(0);

    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (stop, reads, failures) = (stop.clone(), reads.clone(), failures.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match http_request(api, "GET", &format!("/schemas/ids/{id}"), None) {
                    Ok(r) if r.status == 200 => reads.fetch_add(1, Ordering::AcqRel),
                    _ => failures.fetch_add(1, Ordering::AcqRel),
                };
            }
        })
    };
    // The test client gives up after 30 s: the check must answer before.
    let (status, verdict) = call(
        api,
        "POST",
        &format!("/compatibility/subjects/{subject}/versions/latest?verbose=true"),
        Some(json!({ "schema": deep(30, "string") })),
    );
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["is_compatible"], json!(false), "{verdict}");
    let messages = verdict["messages"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        (1..=200).contains(&messages),
        "a bounded list of reasons: {messages}"
    );
    let (status, refused) = call(
        api,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(json!({ "schema": deep(30, "string") })),
    );
    assert_eq!(status, 409, "{refused}");
    stop.store(true, Ordering::Release);
    reader
        .join()
        .unwrap_or_else(|_| panic!("the reader panicked"));
    assert_eq!(
        failures.load(Ordering::Acquire),
        0,
        "reads failed during the checks"
    );
    assert!(reads.load(Ordering::Acquire) > 0, "no read ran alongside");
}

#[test]
fn a_check_past_the_work_bound_is_refused_with_422() {
    let api: SocketAddr = stack()
        .registry_url
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let subject = unique("wide");
    let union = |field: &str| {
        let branches: Vec<String> = (0..1000)
            .map(|i| {
                format!(
                    r#"{{"type":"record","name":"R{i}","fields":[{{"name":"{field}","type":"int"}}]}}"#
                )
            })
            .collect();
        format!(
            r#"{{"type":"record","name":"Top","fields":[{{"name":"u","type":[{}]}}]}}"#,
            branches.join(",")
        )
    };
    let (status, body) = call(
        api,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(json!({ "schema": union("f") })),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        api,
        "POST",
        &format!("/compatibility/subjects/{subject}/versions/latest"),
        Some(json!({ "schema": union("f") })),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error_code"], json!(42201), "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("too complex")),
        "{body}"
    );
}
