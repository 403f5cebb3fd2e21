//! The running suite as an operator sees it. Every service (started by `services.sh`, as `make demo`
//! starts them) runs on a stack of the test's own and takes the demo's workload plus a dead letter
//! replayed; a real Prometheus (Debian's) scrapes their admin ports every second and evaluates the
//! chart's rules, and a real Jaeger receives their spans over OTLP. Then:
//! - every dashboard panel's query and every recording rule returns data, and every alert expression
//!   is accepted with data in the signals it compares (testcontainers/python/prom_check.py);
//! - one command's trace, fetched from Jaeger's API, holds a span of every hop in order: the gateway,
//!   the processor of the order, both projectors, the saga orchestrator and the processor of the next
//!   aggregate (testcontainers/python/trace_check.py).
//!
//! Prometheus comes from `make setup` (apt), Jaeger is built by it into `.stack/tools/bin`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use causeway_testcontainers::native::{TempStack, python, python_script, repo_root};
use causeway_testcontainers::process::{free_port, run_to_exit};
use serde_json::Value;

/// A server the test started, killed when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(name: &'static str, command: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self { name, child, log }
    }

    /// Wait until `port` on 127.0.0.1 accepts connections.
    fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}); its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} does not listen on {port} after 60 s; its log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The services of `services.sh`, stopped when dropped.
struct Services {
    env: Vec<(String, String)>,
}

impl Services {
    fn command(&self, script: &str) -> Command {
        let mut command = Command::new("bash");
        command.arg(repo_root().join("testcontainers/native").join(script));
        command.current_dir(repo_root());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let mut stop = self.command("services.sh");
        stop.arg("stop");
        let _ = run_to_exit(&mut stop, Duration::from_secs(120));
    }
}

/// An offset for the services' ports (admin 9401-9406, HTTP 18080/18083/18086) at which all are free
/// and none is one of `taken`. The ports stay below 32768, under the kernel's ephemeral range, where
/// the outgoing connections of every client on the machine take their local ports.
fn free_offset(taken: &[u16]) -> u16 {
    let bases = [9401u16, 9402, 9403, 9404, 9405, 9406, 18080, 18083, 18086];
    let start = 1_000 + (std::process::id() % 97) as u16 * 100;
    for attempt in 0..130u16 {
        let offset = 1_000 + (start - 1_000 + attempt * 101) % 13_500;
        let free = bases.iter().all(|b| {
            let port = b + offset;
            !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return offset;
        }
    }
    panic!("no free set of ports for the services")
}

fn tool(name: &str) -> PathBuf {
    let local = repo_root().join(".stack/tools/bin").join(name);
    if local.exists() {
        return local;
    }
    let system = Path::new("/usr/bin").join(name);
    assert!(
        system.exists(),
        "{name} is missing (neither {} nor {}): `make setup` installs it",
        local.display(),
        system.display()
    );
    system
}

fn start_prometheus(dir: &Path, offset: u16, registry_admin: u16, port: u16) -> Daemon {
    let jobs = [
        ("command-gateway", 9401 + offset),
        ("aggregate-processor", 9402 + offset),
        ("projector-clickhouse", 9403 + offset),
        ("projector-redis", 9404 + offset),
        ("saga-orchestrator", 9405 + offset),
        ("dlq-reprocessor", 9406 + offset),
        ("schema-registry", registry_admin),
    ];
    let scrape: String = jobs
        .iter()
        .map(|(job, port)| {
            format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            )
        })
        .collect();
    let rules = repo_root().join("helm/causeway/monitoring/rules.yaml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\nscrape_configs:\n{scrape}",
        rules.display()
    );
    std::fs::create_dir_all(dir.join("data")).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).unwrap_or_else(|e| panic!("{e}"));
    let mut prometheus = Daemon::start(
        "prometheus",
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        dir.join("prometheus.log"),
    );
    prometheus.wait_listening(port);
    prometheus
}

fn start_jaeger(dir: &Path, otlp: u16, query: u16, query_grpc: u16) -> Daemon {
    let config = format!(
        "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"
    );
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("jaeger.yaml");
    std::fs::write(&file, config).unwrap_or_else(|e| panic!("{e}"));
    let mut jaeger = Daemon::start(
        "jaeger",
        Command::new(tool("jaeger")).arg("--config").arg(&file),
        dir.join("jaeger.log"),
    );
    jaeger.wait_listening(otlp);
    jaeger.wait_listening(query);
    jaeger
}

/// Run `causeway` with `args` and the test's environment: (exit code, stdout, stderr).
fn causeway(env: &[(String, String)], args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = Command::new(repo_root().join("target/debug/causeway"));
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    match run_to_exit(&mut command, Duration::from_secs(60)) {
        Ok((status, out, err)) => (status.code(), out, err),
        Err(e) => (None, String::new(), e),
    }
}

/// A command through the gateway at `gateway`, with `traceparent` when given: its command id.
fn submit(gateway: u16, path: &str, body: &str, traceparent: Option<&str>) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], gateway));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(t) = traceparent {
        headers.push(("traceparent", t));
    }
    let answer = causeway_testcontainers::process::http_request_with(
        addr,
        "POST",
        path,
        &headers,
        Some(body),
    )
    .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    assert_eq!(answer.status, 202, "POST {path}: {}", answer.body);
    let v: Value = serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}"));
    v["command_id"].as_str().unwrap_or_default().to_string()
}

fn python_json(script: &str, args: &[String], timeout: Duration) -> Value {
    let mut command = Command::new(python());
    command.arg(python_script(script)).args(args);
    let (status, out, err) =
        run_to_exit(&mut command, timeout).unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(status.success(), "{script} failed:\n{err}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{out}{err}"))
}

#[test]
fn dashboards_alerts_and_traces_see_the_running_suite() {
    let stack = TempStack::new();
    let dir = stack.dir.clone();
    let (prometheus_port, otlp, query, query_grpc) =
        (free_port(), free_port(), free_port(), free_port());
    let mut taken: Vec<u16> = stack.ports.iter().map(|(_, p)| *p).collect();
    taken.extend([prometheus_port, otlp, query, query_grpc]);
    let offset = free_offset(&taken);
    let jaeger = start_jaeger(&dir.join("jaeger-run"), otlp, query, query_grpc);
    let endpoints = stack.up();
    let prometheus = start_prometheus(
        &dir.join("prometheus-run"),
        offset,
        stack.port("CAUSEWAY_STACK_REGISTRY_ADMIN_PORT"),
        prometheus_port,
    );

    let env: Vec<(String, String)> = vec![
        ("CAUSEWAY_STACK_DIR".into(), dir.display().to_string()),
        ("CAUSEWAY_SERVICES_PORT_OFFSET".into(), offset.to_string()),
        (
            "CAUSEWAY_SERVICES_ENV".into(),
            format!(
                "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{otlp}\nOTEL_BSP_SCHEDULE_DELAY=100"
            ),
        ),
        (
            "CAUSEWAY_BOOTSTRAP_SERVERS".into(),
            endpoints.kafka_bootstrap.clone(),
        ),
        (
            "CAUSEWAY_DLQ_URL".into(),
            format!("http://127.0.0.1:{}", 18086 + offset),
        ),
    ];
    let services = Services { env: env.clone() };

    // The demo's workload: topics, contracts, every service, commands, sagas, read models, a dead
    // letter discarded.
    let mut demo = services.command("demo.sh");
    let (status, out, err) =
        run_to_exit(&mut demo, Duration::from_secs(600)).unwrap_or_else(|e| panic!("demo.sh: {e}"));
    let _ = std::fs::write(dir.join("demo.log"), format!("{out}\n{err}"));
    assert!(status.success(), "demo.sh failed:\n{out}\n{err}");
    assert!(
        !out.contains("are not done after 30 s") && out.contains("accepted, version"),
        "the demo's commands or sagas did not go through:\n{out}"
    );

    // A dead letter replayed (it fails again and is dead-lettered anew: the replays' series moves).
    let token = std::fs::read_to_string(dir.join("dlq-token")).unwrap_or_else(|e| panic!("{e}"));
    let mut env = env;
    env.push(("CAUSEWAY_DLQ_TOKEN".into(), token.trim().to_string()));
    let key = format!("replay-me-{}", std::process::id());
    let mut kcat = Command::new("kcat");
    kcat.args([
        "-b",
        &endpoints.kafka_bootstrap,
        "-t",
        "orders.order.commands",
        "-k",
        &key,
        "-P",
    ]);
    let mut child = kcat
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kcat: {e}"));
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        stdin
            .write_all(b"not an avro record")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(child.wait().is_ok_and(|s| s.success()), "kcat failed");
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let (code, out, err) = causeway(&env, &["dlq", "list", "--key", &key, "--json"]);
        if code == Some(0) {
            let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            if let Some(id) = v["letters"][0]["id"].as_str() {
                break id.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the dead letter of {key} was not indexed within 60 s: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let (code, out, err) = causeway(&env, &["dlq", "replay", &id]);
    assert_eq!(code, Some(0), "dlq replay {id}: {out}{err}");

    // One command with a trace of the test's own, through an order's whole fulfilment.
    let gateway = 18080 + offset;
    let run = std::process::id();
    let trace_id = format!("{:032x}", u128::from(run) << 64 | 0x5eed);
    let traceparent = format!("00-{trace_id}-00000000000000a1-01");
    submit(
        gateway,
        "/v1/commands/payment/OpenAccount",
        &format!(r#"{{"account_id":"acc-t{run}","currency":"EUR"}}"#),
        None,
    );
    submit(
        gateway,
        "/v1/commands/payment/Deposit",
        &format!(r#"{{"account_id":"acc-t{run}","amount_cents":5000}}"#),
        None,
    );
    submit(
        gateway,
        "/v1/commands/inventory/AddStock",
        &format!(r#"{{"sku":"pen-t{run}","quantity":5}}"#),
        None,
    );
    std::thread::sleep(Duration::from_secs(2));
    submit(
        gateway,
        "/v1/commands/order/PlaceOrder",
        &format!(
            r#"{{"order_id":"order-t{run}","customer_id":"bob","lines":[{{"sku":"pen-t{run}","quantity":1,"unit_price_cents":300}}],"currency":"EUR","payment_account_id":"acc-t{run}"}}"#
        ),
        Some(&traceparent),
    );

    // Every panel, rule and alert against what Prometheus scraped and recorded.
    let report = python_json(
        "prom_check.py",
        &[
            format!("http://127.0.0.1:{prometheus_port}"),
            repo_root()
                .join("helm/causeway/monitoring/dashboards")
                .display()
                .to_string(),
            repo_root()
                .join("helm/causeway/monitoring/rules.yaml")
                .display()
                .to_string(),
            "180".into(),
        ],
        Duration::from_secs(300),
    );
    eprintln!("prom_check: {report}");
    assert_eq!(
        report["failed"],
        Value::Object(Default::default()),
        "queries that returned nothing or were refused: {report:#}\nPrometheus log:\n{}",
        prometheus.log_text()
    );
    assert!(report["panels"].as_u64().unwrap_or(0) >= 30, "{report}");
    assert!(report["moved"].as_u64().unwrap_or(0) >= 10, "{report}");
    assert_eq!(report["alerts"], 8, "{report}");

    // The trace of the PlaceOrder, from Jaeger: every hop, each a child of the one before.
    let trace = python_json(
        "trace_check.py",
        &[
            format!("http://127.0.0.1:{query}"),
            trace_id.clone(),
            "120".into(),
        ],
        Duration::from_secs(200),
    );
    eprintln!("trace_check: {trace}");
    assert_eq!(
        trace["missing"],
        Value::Array(vec![]),
        "hops missing from trace {trace_id}: {trace:#}\nJaeger log:\n{}",
        jaeger.log_text()
    );
    assert_eq!(trace["out_of_order"], Value::Array(vec![]), "{trace:#}");
    // The demo's commands came without a trace: each began one at the gateway.
    assert!(
        trace["gateway_traces"].as_u64().unwrap_or(0) >= 8,
        "the gateway began no traces of its own: {trace:#}"
    );
    drop(services);
}
