//! The registry's REST API end to end: the binary as a process, its state in a `_schemas` topic of its
//! own on the real Kafka of the test stack, driven over HTTP the way Confluent clients drive it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use causeway_testcontainers::process::{HttpResponse, ServiceProcess, free_port, http_request};
use causeway_testcontainers::{stack, unique};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_schema-registry");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema-registry.toml");

struct Registry {
    process: ServiceProcess,
    api: SocketAddr,
}

impl Registry {
    /// A registry on `topic` (a new one when `None`), with its own API port.
    fn start(topic: &str) -> Self {
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let api_text = api.to_string();
        let env = [
            (
                "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
                stack().kafka_bootstrap.as_str(),
            ),
            ("CAUSEWAY__REGISTRY__LISTEN", api_text.as_str()),
            ("CAUSEWAY__REGISTRY__TOPIC", topic),
            ("CAUSEWAY__REGISTRY__WRITER_TRANSACTIONAL_ID", topic),
        ];
        let mut process = ServiceProcess::start(Path::new(BIN), Path::new(SAMPLE), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        process
            .wait_ready(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        Self { process, api }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        let HttpResponse {
            status,
            content_type,
            body,
            ..
        } = http_request(self.api, method, path, text.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(
            content_type.as_deref(),
            Some("application/vnd.schemaregistry.v1+json"),
            "{method} {path}"
        );
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, value)
    }

    /// `(HTTP status, Confluent error_code)` of a call expected to fail.
    fn error(&self, method: &str, path: &str, body: Option<Value>) -> (u16, i64) {
        let (status, value) = self.call(method, path, body);
        let code = value["error_code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{method} {path}: no error_code in {value}"));
        assert!(
            value["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{value}"
        );
        (status, code)
    }

    fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(json!({ "schema": schema })),
        )
    }

    fn stop(self) {
        let exit = self
            .process
            .terminate(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(exit.success(), "{exit}");
    }
}

fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"Order","namespace":"shop","fields":[{fields}]}}"#)
}

const V1_FIELDS: &str = r#"{"name":"id","type":"string"}"#;

#[test]
fn register_read_back_and_look_up() {
    let r = Registry::start(&unique("_schemas"));
    let v1 = record(V1_FIELDS);

    // %2F in a subject, as clients send it.
    let (status, body) = r.register("orders%2Fv-value", &v1);
    assert_eq!((status, body.clone()), (200, json!({ "id": 1 })), "{body}");
    // Same schema again, reformatted, under the same and another subject: same id, no new version.
    let reformatted = v1.replace(':', " : ").replace(',', ",\n ");
    assert_eq!(
        r.register("orders%2Fv-value", &reformatted),
        (200, json!({ "id": 1 }))
    );
    assert_eq!(r.register("other-value", &v1), (200, json!({ "id": 1 })));

    // Unknown body fields, an explicit AVRO type and a capitalised boolean are accepted.
    let (status, body) = r.call(
        "POST",
        "/subjects/third-value/versions?normalize=False",
        Some(json!({ "schema": "\"string\"", "schemaType": "AVRO", "metadata": null, "ruleSet": null })),
    );
    assert_eq!((status, body), (200, json!({ "id": 2 })));

    assert_eq!(
        r.call("GET", "/subjects", None),
        (200, json!(["orders/v-value", "other-value", "third-value"]))
    );
    assert_eq!(
        r.call("GET", "/subjects?subjectPrefix=oth", None),
        (200, json!(["other-value"]))
    );
    assert_eq!(
        r.call("GET", "/subjects/orders%2Fv-value/versions", None),
        (200, json!([1]))
    );
    let (status, latest) = r.call("GET", "/subjects/orders%2Fv-value/versions/latest", None);
    assert_eq!(status, 200);
    assert_eq!(
        (
            latest["subject"].clone(),
            latest["version"].clone(),
            latest["id"].clone()
        ),
        (json!("orders/v-value"), json!(1), json!(1))
    );
    let stored: Value =
        serde_json::from_str(latest["schema"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(stored["fields"][0]["name"], "id");
    assert_eq!(
        r.call("GET", "/subjects/orders%2Fv-value/versions/1", None)
            .1,
        latest
    );
    let (status, raw) = r.call("GET", "/subjects/orders%2Fv-value/versions/1/schema", None);
    assert_eq!((status, raw["name"].clone()), (200, json!("Order")));

    let (status, by_id) = r.call("GET", "/schemas/ids/1", None);
    assert_eq!(
        (status, by_id["schema"].clone()),
        (200, latest["schema"].clone())
    );
    assert_eq!(
        r.call("GET", "/schemas/ids/1/subjects", None),
        (200, json!(["orders/v-value", "other-value"]))
    );
    assert_eq!(
        r.call("GET", "/schemas/ids/1/versions", None),
        (
            200,
            json!([{ "subject": "orders/v-value", "version": 1 }, { "subject": "other-value", "version": 1 }])
        )
    );
    assert_eq!(
        r.call("GET", "/schemas/types", None),
        (200, json!(["AVRO"]))
    );

    let (status, found) = r.call(
        "POST",
        "/subjects/other-value",
        Some(json!({ "schema": reformatted })),
    );
    assert_eq!(
        (status, found["id"].clone(), found["version"].clone()),
        (200, json!(1), json!(1))
    );

    // Errors, with Confluent's codes.
    assert_eq!(
        r.error("POST", "/subjects/nope", Some(json!({ "schema": v1 }))),
        (404, 40401)
    );
    assert_eq!(
        r.error(
            "POST",
            "/subjects/other-value",
            Some(json!({ "schema": "\"long\"" }))
        ),
        (404, 40403)
    );
    assert_eq!(
        r.error("GET", "/subjects/nope/versions", None),
        (404, 40401)
    );
    assert_eq!(
        r.error("GET", "/subjects/other-value/versions/7", None),
        (404, 40402)
    );
    assert_eq!(
        r.error("GET", "/subjects/other-value/versions/zero", None),
        (422, 42202)
    );
    assert_eq!(r.error("GET", "/schemas/ids/99", None), (404, 40403));
    assert_eq!(
        r.error(
            "POST",
            "/subjects/x/versions",
            Some(json!({ "schema": "{\"type\":\"recrod\"}" }))
        ),
        (422, 42201)
    );
    assert_eq!(
        r.error(
            "POST",
            "/subjects/x/versions",
            Some(json!({ "schema": "not json" }))
        ),
        (422, 42201)
    );
    assert_eq!(
        r.error(
            "POST",
            "/subjects/x/versions",
            Some(json!({ "schema": "{}", "schemaType": "PROTOBUF" }))
        ),
        (422, 42201)
    );
    let (status, _) = r.error(
        "POST",
        "/subjects/x/versions",
        Some(json!({ "schemaa": "x" })),
    );
    assert_eq!(status, 422);
    r.stop();
}

#[test]
fn compatibility_levels_guard_registration() {
    let r = Registry::start(&unique("_schemas"));
    let v1 = record(V1_FIELDS);
    let without_default = record(&format!(r#"{V1_FIELDS},{{"name":"total","type":"long"}}"#));
    let with_default = record(&format!(
        r#"{V1_FIELDS},{{"name":"total","type":"long","default":0}}"#
    ));
    assert_eq!(r.register("c-value", &v1), (200, json!({ "id": 1 })));

    assert_eq!(
        r.call("GET", "/config", None),
        (200, json!({ "compatibilityLevel": "BACKWARD" }))
    );
    let (status, body) = r.register("c-value", &without_default);
    assert_eq!(
        (status, body["error_code"].clone()),
        (409, json!(409)),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("total")),
        "the message names the field: {body}"
    );

    let (status, verdict) = r.call(
        "POST",
        "/compatibility/subjects/c-value/versions/latest?verbose=true",
        Some(json!({ "schema": without_default })),
    );
    assert_eq!(
        (status, verdict["is_compatible"].clone()),
        (200, json!(false))
    );
    assert!(
        verdict["messages"][0]
            .as_str()
            .is_some_and(|m| m.contains("total")),
        "{verdict}"
    );
    assert_eq!(
        r.call(
            "POST",
            "/compatibility/subjects/c-value/versions",
            Some(json!({ "schema": with_default }))
        ),
        (200, json!({ "is_compatible": true }))
    );

    assert_eq!(
        r.register("c-value", &with_default),
        (200, json!({ "id": 2 }))
    );
    assert_eq!(
        r.call("GET", "/subjects/c-value/versions", None),
        (200, json!([1, 2]))
    );

    assert_eq!(
        r.error(
            "PUT",
            "/config",
            Some(json!({ "compatibility": "SIDEWAYS" }))
        ),
        (422, 42203)
    );
    assert_eq!(r.error("GET", "/config/c-value", None), (404, 40408));
    assert_eq!(
        r.call("GET", "/config/c-value?defaultToGlobal=true", None),
        (200, json!({ "compatibilityLevel": "BACKWARD" }))
    );
    assert_eq!(
        r.call(
            "PUT",
            "/config/c-value",
            Some(json!({ "compatibility": "none" }))
        ),
        (200, json!({ "compatibility": "NONE" }))
    );
    assert_eq!(
        r.call("GET", "/config/c-value", None),
        (200, json!({ "compatibilityLevel": "NONE" }))
    );
    assert_eq!(
        r.register("c-value", "\"string\""),
        (200, json!({ "id": 3 })),
        "NONE lets anything through"
    );
    assert_eq!(
        r.call("DELETE", "/config/c-value", None),
        (200, json!({ "compatibilityLevel": "NONE" }))
    );
    assert_eq!(
        r.call(
            "PUT",
            "/config",
            Some(json!({ "compatibility": "FULL_TRANSITIVE" }))
        ),
        (200, json!({ "compatibility": "FULL_TRANSITIVE" }))
    );
    assert_eq!(
        r.call("GET", "/config", None),
        (200, json!({ "compatibilityLevel": "FULL_TRANSITIVE" }))
    );
    r.stop();
}

#[test]
fn soft_and_permanent_deletes_follow_confluents_rules() {
    let r = Registry::start(&unique("_schemas"));
    assert_eq!(
        r.register("d-value", "\"string\""),
        (200, json!({ "id": 1 }))
    );
    r.call(
        "PUT",
        "/config/d-value",
        Some(json!({ "compatibility": "NONE" })),
    );
    assert_eq!(r.register("d-value", "\"int\""), (200, json!({ "id": 2 })));
    assert_eq!(r.register("d-value", "\"long\""), (200, json!({ "id": 3 })));

    assert_eq!(
        r.error(
            "DELETE",
            "/subjects/d-value/versions/2?permanent=true",
            None
        ),
        (404, 40407)
    );
    assert_eq!(
        r.call("DELETE", "/subjects/d-value/versions/2", None),
        (200, json!(2))
    );
    assert_eq!(
        r.error("DELETE", "/subjects/d-value/versions/2", None),
        (404, 40406)
    );
    assert_eq!(
        r.call("GET", "/subjects/d-value/versions", None),
        (200, json!([1, 3]))
    );
    assert_eq!(
        r.call("GET", "/subjects/d-value/versions?deleted=true", None),
        (200, json!([1, 2, 3]))
    );
    assert_eq!(
        r.error("GET", "/subjects/d-value/versions/2", None),
        (404, 40402)
    );
    assert_eq!(
        r.call("GET", "/subjects/d-value/versions/2?deleted=True", None)
            .0,
        200
    );
    assert_eq!(
        r.call("GET", "/schemas/ids/2", None).0,
        200,
        "a soft-deleted version keeps its id readable"
    );
    assert_eq!(
        r.call(
            "DELETE",
            "/subjects/d-value/versions/2?permanent=true",
            None
        ),
        (200, json!(2))
    );
    assert_eq!(r.error("GET", "/schemas/ids/2", None), (404, 40403));

    assert_eq!(
        r.error("DELETE", "/subjects/d-value?permanent=true", None),
        (404, 40405)
    );
    assert_eq!(
        r.call("DELETE", "/subjects/d-value", None),
        (200, json!([1, 3]))
    );
    assert_eq!(r.error("DELETE", "/subjects/d-value", None), (404, 40404));
    assert_eq!(r.call("GET", "/subjects", None), (200, json!([])));
    assert_eq!(
        r.call("GET", "/subjects?deleted=true", None),
        (200, json!(["d-value"]))
    );
    assert_eq!(
        r.call("DELETE", "/subjects/d-value?permanent=true", None),
        (200, json!([1, 3]))
    );
    assert_eq!(
        r.call("GET", "/subjects?deleted=true", None),
        (200, json!([]))
    );
    assert_eq!(r.error("DELETE", "/subjects/d-value", None), (404, 40401));

    // Ids are never given twice, even after every use of an id is gone.
    assert_eq!(r.register("e-value", "\"int\""), (200, json!({ "id": 4 })));
    r.stop();
}

#[test]
fn modes_refuse_writes_when_read_only() {
    let r = Registry::start(&unique("_schemas"));
    assert_eq!(
        r.call("GET", "/mode", None),
        (200, json!({ "mode": "READWRITE" }))
    );
    assert_eq!(
        r.error("PUT", "/mode", Some(json!({ "mode": "SOMETIMES" }))),
        (422, 42204)
    );
    assert_eq!(
        r.call("PUT", "/mode/m-value", Some(json!({ "mode": "READONLY" }))),
        (200, json!({ "mode": "READONLY" }))
    );
    assert_eq!(
        r.error(
            "POST",
            "/subjects/m-value/versions",
            Some(json!({ "schema": "\"int\"" }))
        ),
        (422, 42205)
    );
    assert_eq!(
        r.register("other-value", "\"int\""),
        (200, json!({ "id": 1 })),
        "other subjects stay writable"
    );
    assert_eq!(
        r.call("DELETE", "/mode/m-value", None),
        (200, json!({ "mode": "READONLY" }))
    );
    assert_eq!(r.register("m-value", "\"int\""), (200, json!({ "id": 1 })));
    assert_eq!(r.error("GET", "/mode/m-value", None), (404, 40409));
    r.stop();
}

#[test]
fn state_comes_back_from_the_topic_after_a_restart() {
    let topic = unique("_schemas");
    let first = Registry::start(&topic);
    assert_eq!(
        first.register("r-value", &record(V1_FIELDS)),
        (200, json!({ "id": 1 }))
    );
    first.call(
        "PUT",
        "/config/r-value",
        Some(json!({ "compatibility": "FULL" })),
    );
    assert_eq!(
        first.register("s-value", "\"string\""),
        (200, json!({ "id": 2 }))
    );
    assert_eq!(
        first.call("DELETE", "/subjects/s-value", None),
        (200, json!([1]))
    );
    first.stop();

    let second = Registry::start(&topic);
    assert_eq!(
        second.call("GET", "/subjects", None),
        (200, json!(["r-value"]))
    );
    assert_eq!(
        second.call("GET", "/subjects?deleted=true", None),
        (200, json!(["r-value", "s-value"]))
    );
    assert_eq!(
        second.call("GET", "/config/r-value", None),
        (200, json!({ "compatibilityLevel": "FULL" }))
    );
    assert_eq!(second.call("GET", "/schemas/ids/1", None).0, 200);
    assert_eq!(
        second.register("t-value", "\"bytes\""),
        (200, json!({ "id": 3 })),
        "ids continue after a restart"
    );
    second.stop();
}

impl Registry {
    fn is_leader(&self) -> bool {
        self.process
            .get("/metrics")
            .map(|(_, body)| body.lines().any(|l| l == "causeway_registry_leader 1"))
            .unwrap_or(false)
    }

    fn kill(self) {
        self.process.kill().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Poll `f` until it holds, up to `secs` seconds.
    fn eventually(&self, secs: u64, what: &str, mut f: impl FnMut(&Self) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} did not happen within {secs}s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn two_instances_one_writer_and_a_killed_writer_hands_over_without_reusing_ids() {
    let topic = unique("_schemas");
    let a = Registry::start(&topic);
    let b = Registry::start(&topic);
    // The group settles (the second member's join moves the partition or not): exactly one writer,
    // the same one a second later.
    a.eventually(30, "a settled election", |a| {
        let first = (a.is_leader(), b.is_leader());
        std::thread::sleep(Duration::from_secs(1));
        first.0 != first.1 && first == (a.is_leader(), b.is_leader())
    });
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };

    // Writes through either instance land once, on the writer.
    assert_eq!(
        follower.register("f-value", "\"string\""),
        (200, json!({ "id": 1 })),
        "forwarded"
    );
    assert_eq!(
        leader.register("l-value", "\"int\""),
        (200, json!({ "id": 2 }))
    );
    follower.eventually(10, "the follower reading id 2", |f| {
        f.call("GET", "/schemas/ids/2", None).0 == 200
    });
    assert_eq!(
        leader.call("GET", "/subjects", None),
        (200, json!(["f-value", "l-value"]))
    );
    assert_eq!(
        follower.call("GET", "/subjects", None),
        (200, json!(["f-value", "l-value"]))
    );

    // The writer dies without a goodbye; the other instance takes over.
    leader.kill();
    follower.eventually(60, "the hand-over", Registry::is_leader);
    assert_eq!(
        follower.register("after-value", "\"long\""),
        (200, json!({ "id": 3 })),
        "no id reused"
    );

    // The dead one comes back as a follower of the new writer.
    let back = Registry::start(&topic);
    assert!(!back.is_leader());
    assert_eq!(
        back.register("back-value", "\"bytes\""),
        (200, json!({ "id": 4 })),
        "forwarded"
    );
    assert_eq!(
        back.call("GET", "/schemas/ids/3", None).1["schema"],
        "\"long\""
    );
    back.stop();
    follower.stop();
}

#[test]
fn references_resolve_and_protect_what_they_reference() {
    let r = Registry::start(&unique("_schemas"));
    let money = r#"{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"cents","type":"long"}]}"#;
    assert_eq!(r.register("shop.Money", money), (200, json!({ "id": 1 })));
    let order = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"total","type":"shop.Money"}]}"#;
    let reference = json!([{ "name": "shop.Money", "subject": "shop.Money", "version": 1 }]);
    let (status, body) = r.call(
        "POST",
        "/subjects/orders-shop.Order/versions",
        Some(json!({ "schema": order, "references": reference })),
    );
    assert_eq!((status, body), (200, json!({ "id": 2 })));
    // Without the reference the same schema does not parse.
    assert_eq!(
        r.error(
            "POST",
            "/subjects/x-value/versions",
            Some(json!({ "schema": order }))
        ),
        (422, 42201)
    );
    let dangling = json!([{ "name": "shop.Money", "subject": "shop.Money", "version": 9 }]);
    assert_eq!(
        r.error(
            "POST",
            "/subjects/x-value/versions",
            Some(json!({ "schema": order, "references": dangling }))
        ),
        (422, 42201)
    );

    let (status, by_id) = r.call("GET", "/schemas/ids/2", None);
    assert_eq!(
        (status, by_id["references"].clone()),
        (200, reference.clone())
    );
    assert_eq!(
        r.call("GET", "/subjects/shop.Money/versions/1/referencedby", None),
        (200, json!([2]))
    );
    let (status, raw) = r.call("GET", "/schemas/ids/2/schema", None);
    assert_eq!((status, raw["name"].clone()), (200, json!("Order")));
    assert_eq!(r.call("GET", "/", None), (200, json!({})));

    // What is referenced cannot be deleted; once its referrer is gone, it can.
    assert_eq!(
        r.error("DELETE", "/subjects/shop.Money/versions/1", None),
        (422, 42206)
    );
    assert_eq!(
        r.error("DELETE", "/subjects/shop.Money", None),
        (422, 42206)
    );
    assert_eq!(
        r.call("DELETE", "/subjects/orders-shop.Order", None),
        (200, json!([1]))
    );
    assert_eq!(
        r.call("DELETE", "/subjects/shop.Money", None),
        (200, json!([1]))
    );
    r.stop();
}
