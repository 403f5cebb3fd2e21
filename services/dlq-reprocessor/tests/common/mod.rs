//! The dlq-reprocessor as a process for a test, and its API: for its own tests and for the tests of
//! the consumers it serves (they include this file), which give the path of its binary.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use causeway_testcontainers::Stack;
use causeway_testcontainers::process::{ServiceProcess, free_port, http_request_with};
use causeway_testcontainers::unique;
use serde_json::Value;

/// The token the tests' reprocessor accepts (its holder: `tester`).
pub const TOKEN: &str = "tester-token-0123456789abcdef";

/// The audit topic (the sample config's).
pub const AUDIT_TOPIC: &str = "causeway.dlq-audit";

/// The sample config, beside the reprocessor's Cargo.toml.
pub fn sample_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dlq-reprocessor/dlq-reprocessor.toml")
        .canonicalize()
        .unwrap_or_else(|e| panic!("the reprocessor's sample config: {e}"))
}

/// A reprocessor and its API's address.
pub struct Reprocessor {
    pub process: ServiceProcess,
    pub api: SocketAddr,
    /// Its Redis keys start with this.
    pub prefix: String,
}

/// Start `bin` on `stack`, reading the DLQ topics that match `pattern`, with the loop guard at
/// `max_replays` and `extra` environment; ready.
pub fn start(
    bin: &Path,
    stack: &Stack,
    pattern: &str,
    max_replays: u32,
    extra: &[(&str, &str)],
) -> Reprocessor {
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = api.to_string();
    let prefix = unique("dlq-index");
    let group = unique("dlq-reprocessor");
    let topics = format!("[\"{pattern}\"]");
    let tokens = format!("[{{ name = \"tester\", token = \"{TOKEN}\" }}]");
    let max = max_replays.to_string();
    let mut env = vec![
        (
            "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
            stack.kafka_bootstrap.as_str(),
        ),
        ("CAUSEWAY__REDIS__URL", stack.redis_url.as_str()),
        ("CAUSEWAY__DLQ__REGISTRY_URL", stack.registry_url.as_str()),
        ("CAUSEWAY__DLQ__PREFIX", prefix.as_str()),
        ("CAUSEWAY__DLQ__GROUP_ID", group.as_str()),
        ("CAUSEWAY__DLQ__TOPICS", topics.as_str()),
        ("CAUSEWAY__DLQ__MAX_REPLAYS", max.as_str()),
        ("CAUSEWAY__HTTP__LISTEN", listen.as_str()),
        ("CAUSEWAY__ACCESS__TOKENS", tokens.as_str()),
    ];
    env.extend_from_slice(extra);
    let mut process =
        ServiceProcess::start(bin, &sample_config(), &env).unwrap_or_else(|e| panic!("{e}"));
    process
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    Reprocessor {
        process,
        api,
        prefix,
    }
}

/// The pattern of the DLQ topics of groups whose names start with `prefix`.
pub fn pattern_for(prefix: &str) -> String {
    format!("^{}.*[.]dlq$", prefix.replace('.', "[.]"))
}

/// A call to the API with the test's token: status and JSON body.
pub fn call(api: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    call_as(api, Some(TOKEN), method, path, body)
}

/// A call with `token` (none: no Authorization header).
pub fn call_as(
    api: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let r = http_request_with(api, method, path, &headers, body).unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
    (r.status, json)
}

/// The letters matching `query` (e.g. `group=g&state=parked`), waiting until there are `n`.
pub fn wait_letters(api: SocketAddr, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = call(api, "GET", &format!("/v1/dead-letters?{query}"), None);
        assert_eq!(status, 200, "{body}");
        let letters = body["letters"].as_array().cloned().unwrap_or_default();
        if letters.len() >= n {
            assert_eq!(letters.len(), n, "{body}");
            return letters;
        }
        assert!(
            Instant::now() < deadline,
            "{n} letters matching {query} expected; the index has {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Produce `value` keyed `key` to `topic` with a header whose name is not UTF-8 (as a producer outside
/// the suite may send it; rdkafka's own API cannot), through kcat.
pub fn produce_with_binary_header_name(bootstrap: &str, topic: &str, key: &str, value: &str) {
    use std::io::Write as _;
    use std::os::unix::ffi::OsStrExt as _;
    let header = std::ffi::OsStr::from_bytes(b"\xff\xfebinary=value");
    let mut child = std::process::Command::new("kcat")
        .args(["-P", "-b", bootstrap, "-t", topic, "-k", key, "-H"])
        .arg(header)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kcat (make setup installs it): {e}"));
    child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("kcat's stdin"))
        .write_all(value.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "kcat: {status}");
}

/// A binary of the workspace built beside this test's own (`make build`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(name)))
        .unwrap_or_else(|| panic!("no target directory above the test"));
    assert!(bin.exists(), "{} is missing: make build", bin.display());
    bin
}

/// Provision the audit topic and `compacted` topics (each with one partition) on the stack of `kafka`.
pub async fn provision(kafka: &causeway_kafka::KafkaConfig, compacted: &[&str]) {
    let mut declared = format!(
        "[defaults]\npartitions = 1\nreplication_factor = 1\n[[topic]]\nname = \"{AUDIT_TOPIC}\"\n"
    );
    for t in compacted {
        declared += &format!("[[topic]]\nname = \"{t}\"\ncleanup_policy = \"compact\"\n");
    }
    let topology = causeway_kafka::topology::Topology::parse(&declared, "test")
        .unwrap_or_else(|e| panic!("{e}"));
    causeway_kafka::topology::apply(kafka, &topology, false, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A connection to the stack's Redis.
pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("{e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Wait (30 s at most) until `process`'s `/metrics` has the line `line` (gauges are read every few
/// seconds).
pub fn wait_metric(process: &ServiceProcess, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = process.get("/metrics").unwrap_or_else(|e| panic!("{e}"));
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "no {line:?} in\n{metrics}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
