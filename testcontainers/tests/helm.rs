//! The Helm chart (helm/causeway): `helm lint` and `helm template` with the default values and with a
//! production-like values file; every rendered manifest validated offline against the schema of its kind
//! (Kubernetes' own kinds with kubernetes-validate, strict; the ServiceMonitors and PrometheusRule against
//! prometheus-operator's CRDs), with the checks production wants (probes on the admin port, non-root,
//! read-only root filesystem, resources, secrets referenced and never inlined); bad values refused by
//! `values.schema.json` with the message a user sees; the alert rules checked and unit-tested by
//! promtool, each linking a runbook and a dashboard panel. Helm, the CRDs and promtool come from
//! `make setup`.

use std::path::PathBuf;
use std::process::Command;

use causeway_testcontainers::manifests::{self, KUBE_VERSION};
use causeway_testcontainers::native::repo_root;
use serde_json::Value;

fn helm() -> PathBuf {
    manifests::tool("helm")
}

fn promtool() -> PathBuf {
    let promtool = PathBuf::from("/usr/bin/promtool");
    assert!(
        promtool.exists(),
        "promtool is missing: `make setup` installs Debian's prometheus package"
    );
    promtool
}

fn chart() -> String {
    repo_root().join("helm/causeway").display().to_string()
}

fn production_values() -> String {
    repo_root()
        .join("helm/causeway/tests/values-production.yaml")
        .display()
        .to_string()
}

/// Run helm with `args`: (success, stdout, stderr).
fn run_helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(helm())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("helm: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template` of the chart for Kubernetes KUBE_VERSION with `extra` arguments: (success, stdout,
/// stderr).
fn template(extra: &[&str]) -> (bool, String, String) {
    let chart = chart();
    let mut args = vec![
        "template",
        "causeway",
        &chart,
        "--kube-version",
        KUBE_VERSION,
    ];
    args.extend_from_slice(extra);
    run_helm(&args)
}

/// `helm template` with `extra` arguments, checked by chart_check.py: its report.
fn render_and_check(extra: &[&str]) -> Value {
    let (ok, manifests, err) = template(extra);
    assert!(ok, "helm template {extra:?} failed:\n{err}");
    check_manifests(&manifests)
}

/// `manifests` checked by chart_check.py: its report.
fn check_manifests(manifests: &str) -> Value {
    serde_json::from_str(&manifests::check(manifests)).unwrap_or_else(|e| panic!("{e}"))
}

fn count(report: &Value, kind: &str) -> usize {
    report["objects"][kind].as_array().map_or(0, Vec::len)
}

fn assert_clean(report: &Value, what: &str) {
    assert_eq!(report["invalid"], Value::Array(vec![]), "{what}: {report}");
    assert_eq!(report["problems"], Value::Array(vec![]), "{what}: {report}");
}

#[test]
fn the_chart_lints_with_default_and_production_values() {
    let chart = chart();
    let production = production_values();
    for args in [
        vec!["lint", chart.as_str(), "--strict"],
        vec![
            "lint",
            chart.as_str(),
            "--strict",
            "-f",
            production.as_str(),
        ],
    ] {
        let (ok, out, err) = run_helm(&args);
        assert!(ok, "helm {args:?}:\n{out}{err}");
    }
}

#[test]
fn every_rendered_manifest_validates_against_its_kind() {
    let defaults = render_and_check(&[]);
    assert_clean(&defaults, "default values");
    // Every service, each with what runs it; the autoscaled gateway alone by default; the provisioning
    // hook; the dashboards; no custom resource unless asked for.
    for kind in ["Service", "ServiceAccount"] {
        assert_eq!(count(&defaults, kind), 7, "{kind}: {defaults}");
    }
    assert_eq!(count(&defaults, "ConfigMap"), 7 + 3, "{defaults}");
    assert_eq!(count(&defaults, "HorizontalPodAutoscaler"), 1, "{defaults}");
    assert_eq!(count(&defaults, "PodDisruptionBudget"), 5, "{defaults}");
    assert_eq!(count(&defaults, "Job"), 2, "{defaults}");
    assert_eq!(defaults["custom"], Value::Array(vec![]), "{defaults}");

    assert_eq!(count(&defaults, "Deployment"), 5, "{defaults}");
    assert_eq!(count(&defaults, "StatefulSet"), 2, "{defaults}");

    // The dashboards: one ConfigMap each, labelled for Grafana's sidecar, the JSON a dashboard.
    let boards = defaults["dashboards"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let uids: Vec<&str> = boards.iter().filter_map(|b| b["uid"].as_str()).collect();
    assert_eq!(
        uids,
        ["causeway-dlq", "causeway-processing", "causeway-sagas"],
        "{defaults}"
    );
    for b in &boards {
        assert_eq!(b["labels"]["grafana_dashboard"], "1", "{b}");
        assert!(b["panels"].as_u64().unwrap_or(0) >= 6, "{b}");
    }

    // The processor keeps its aggregate states on a volume of its own.
    let workloads = defaults["workloads"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let processor = workloads
        .iter()
        .find(|w| w["binary"] == "aggregate-processor")
        .unwrap_or_else(|| panic!("no processor: {defaults}"));
    assert_eq!(
        processor["env"]["CAUSEWAY__PROCESSOR__STATE_DIR"], "/var/lib/causeway/state",
        "{processor}"
    );
    assert!(
        processor["mounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "/var/lib/causeway/state")),
        "{processor}"
    );

    let production = render_and_check(&["-f", &production_values()]);
    assert_clean(&production, "production values");
    assert_eq!(count(&production, "ServiceMonitor"), 7, "{production}");
    assert_eq!(count(&production, "PrometheusRule"), 1, "{production}");
    // The custom resources asked for, each validated against its CRD's schema.
    let custom = production["custom"].as_array().cloned().unwrap_or_default();
    assert_eq!(custom.len(), 8, "{production}");
    assert!(
        custom.iter().all(|c| c.as_str().is_some_and(|c| c
            .starts_with("monitoring.coreos.com/v1/ServiceMonitor/")
            || c.starts_with("monitoring.coreos.com/v1/PrometheusRule/"))),
        "{production}"
    );
    // The rules are the rule file's, each alert's runbook under the base the values give.
    let rules = production["rules"].as_array().cloned().unwrap_or_default();
    let alerts: Vec<&Value> = rules.iter().filter(|r| r.get("alert").is_some()).collect();
    assert_eq!(alerts.len(), 8, "{production}");
    for alert in alerts {
        let url = alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        assert!(
            url.starts_with("https://runbooks.example.com/causeway/") && url.ends_with(".md"),
            "{alert}"
        );
    }
}

/// The check refuses what a cluster would: a field a kind does not have, in Kubernetes' own kinds and in
/// custom resources; a value of the wrong type in a Strimzi resource; a kind no schema knows.
#[test]
fn the_manifest_check_refuses_what_a_cluster_would() {
    let bad = r#"
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {ports: [{port: 80}], portz: 1}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: b}
spec: {selector: {}, endpoints: [{port: admin, intervall: 30s}]}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: c}
spec: {scaleTargetRef: {name: x}, triggers: [{type: kafka, metadata: {}}], minReplicaCount: "two"}
---
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaTopic
metadata: {name: d}
spec: {partitions: six}
---
apiVersion: example.com/v1
kind: Unknown
metadata: {name: e}
"#;
    let report = check_manifests(bad);
    let invalid: Vec<String> = report["invalid"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for expected in [
        "Service/a: ",
        "ServiceMonitor/b: Additional properties are not allowed ('intervall'",
        "ScaledObject/c: 'two' is not of type 'integer'",
        "KafkaTopic/d: data/spec/partitions must be integer",
        "example.com/v1/Unknown/e: no schema for this kind",
    ] {
        assert!(
            invalid
                .iter()
                .any(|i| i.starts_with(expected) || i.contains(expected)),
            "{expected:?} not in {invalid:#?}"
        );
    }
    assert_eq!(invalid.len(), 5, "{invalid:#?}");
}

/// The alert rules pass `promtool check rules` and their unit tests (each alert fires on what should
/// fire it and resolves); each alert links a runbook of docs/runbooks/ and names a panel the
/// dashboards have.
#[test]
fn the_alert_rules_check_and_their_unit_tests_pass() {
    let monitoring = repo_root().join("helm/causeway/monitoring");
    for args in [
        vec!["check", "rules", "rules.yaml"],
        vec!["test", "rules", "rules.test.yaml"],
    ] {
        let out = Command::new(promtool())
            .args(&args)
            .current_dir(&monitoring)
            .output()
            .unwrap_or_else(|e| panic!("promtool: {e}"));
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(monitoring.join("rules.yaml")).unwrap_or_default();
    let mut panels = Vec::new();
    for entry in std::fs::read_dir(monitoring.join("dashboards")).unwrap_or_else(|e| panic!("{e}"))
    {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let board: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for p in board["panels"].as_array().cloned().unwrap_or_default() {
            panels.push(format!(
                "{} / {}",
                board["title"].as_str().unwrap_or_default(),
                p["title"].as_str().unwrap_or_default()
            ));
        }
    }
    let links: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .collect();
    let named: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("dashboard: "))
        .map(|l| l.trim_matches('"'))
        .collect();
    assert_eq!(links.len(), 8, "one runbook per alert");
    assert_eq!(named.len(), 8, "one panel per alert");
    for link in links {
        let page = link
            .strip_prefix("https://github.com/causeway-rs/causeway/blob/main/")
            .unwrap_or_else(|| panic!("{link} is not under the repository"));
        assert!(repo_root().join(page).exists(), "{link}: no such runbook");
    }
    for panel in named {
        assert!(
            panels.iter().any(|p| p == panel),
            "{panel}: no such panel in {panels:#?}"
        );
    }
}

/// A workload KEDA scales (k8s/) gets no replica count from the chart, so that an upgrade leaves KEDA's
/// choice alone; the chart's own autoscaler and an external one exclude each other.
#[test]
fn an_externally_scaled_workload_has_no_replica_count() {
    let report = render_and_check(&[
        "--set",
        "services.projector-redis.externalAutoscaler=true",
        "--set",
        "services.aggregate-processor.externalAutoscaler=true",
    ]);
    assert_clean(&report, "external autoscalers");
    for w in report["workloads"].as_array().cloned().unwrap_or_default() {
        let name = w["name"].as_str().unwrap_or_default();
        let external = name.ends_with("projector-redis") || name.ends_with("aggregate-processor");
        // The gateway's replica count is its HorizontalPodAutoscaler's.
        let hpa = name.ends_with("command-gateway");
        assert_eq!(w["replicas"].is_null(), external || hpa, "{w}");
    }
    let (ok, _, err) = template(&["--set", "services.command-gateway.externalAutoscaler=true"]);
    assert!(
        !ok,
        "two owners of the gateway's replica count were accepted"
    );
    assert!(err.contains("exclude each other"), "{err}");
}

#[test]
fn secrets_are_referenced_never_inlined() {
    let production = production_values();
    let (ok, manifests, err) = template(&["-f", &production]);
    assert!(ok, "{err}");
    for reference in [
        "name: kafka-credentials",
        "name: redis-credentials",
        "name: clickhouse-credentials",
        "name: dlq-tokens",
    ] {
        assert!(
            manifests.contains(reference),
            "{reference} is not referenced"
        );
    }
    assert!(
        !manifests.contains("kind: Secret"),
        "the chart creates no Secret"
    );
    // The Redis URL comes from its Secret, not from a ConfigMap.
    assert!(
        !manifests.contains("CAUSEWAY__REDIS__URL: \"rediss://"),
        "{manifests}"
    );
}

#[test]
fn bad_values_are_refused_naming_the_value() {
    for (set, expected) in [
        (
            "kafka.bootstrapServers=nohost",
            "at '/kafka/bootstrapServers': 'nohost' does not match pattern",
        ),
        (
            "services.command-gateway.replicas=-1",
            "at '/services/command-gateway/replicas': minimum: got -1, want 0",
        ),
        ("nope=1", "additional properties 'nope' not allowed"),
        (
            "image.pullPolicy=Sometimes",
            "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            "redis.url=redis://user:secret@redis:6379",
            "at '/redis/url'",
        ),
        (
            "kafka.properties.sasl\\.password=hunter2",
            "at '/kafka/properties'",
        ),
        (
            "services.aggregate-processor.env.RUST_LOG=debug",
            "'RUST_LOG' does not match pattern '^CAUSEWAY__",
        ),
        ("dlq.tokensSecret.name=", "at '/dlq/tokensSecret/name'"),
        // TLS to the collector is not built in: refused here rather than a crash loop in the pods.
        (
            "tracing.otlpEndpoint=https://collector:4317",
            "at '/tracing/otlpEndpoint'",
        ),
    ] {
        let (ok, _, err) = template(&["--set", set]);
        assert!(!ok, "--set {set} was accepted");
        assert!(
            err.contains("values don't meet the specifications of the schema")
                && err.contains(expected),
            "--set {set}: expected {expected:?} in:\n{err}"
        );
    }
}

/// Each workload the chart renders starts: its binary (the workspace's build) accepts the environment
/// the chart gives it (ConfigMap, env, Secrets and the downward API by stand-ins) over the sample config
/// the image carries: no unknown key, no value its checks refuse.
#[test]
fn every_service_accepts_the_configuration_the_chart_gives_it() {
    let counter = [
        "--set",
        "domain=counter",
        "--set",
        "services.saga-orchestrator.enabled=false",
        "--set",
        "services.projector-redis.enabled=false",
        "--set",
        "services.projector-clickhouse.enabled=false",
    ]
    .map(str::to_string)
    .to_vec();
    for (extra, services) in [
        (vec![], 7),
        (vec!["-f".to_string(), production_values()], 7),
        // Another domain (no saga, no projection) from the same image.
        (counter, 4),
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let report = render_and_check(&extra);
        let workloads = report["workloads"].as_array().cloned().unwrap_or_default();
        assert_eq!(workloads.len(), services, "{report}");
        // Traces exported where values name an endpoint (production), by every workload.
        let tracing = extra.contains(&"-f");
        for w in &workloads {
            assert_eq!(
                w["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str(),
                tracing.then_some("http://otel-collector.monitoring:4317"),
                "{w}"
            );
            if tracing {
                assert_eq!(w["env"]["OTEL_TRACES_SAMPLER_ARG"], "0.05", "{w}");
            }
        }
        for w in workloads {
            let binary = w["binary"].as_str().unwrap_or_default();
            let bin = repo_root().join("target/debug").join(binary);
            assert!(
                bin.exists(),
                "{} is missing: build the workspace first (make build)",
                bin.display()
            );
            let sample = repo_root().join(format!("services/{binary}/{binary}.toml"));
            let mut command = Command::new(&bin);
            command
                .env_clear()
                .arg("--config")
                .arg(&sample)
                .arg("--check-config");
            if let Some(env) = w["env"].as_object() {
                for (k, v) in env {
                    command.env(k, v.as_str().unwrap_or_default());
                }
            }
            let out = command.output().unwrap_or_else(|e| panic!("{binary}: {e}"));
            assert!(
                out.status.success(),
                "{binary} refuses the chart's configuration ({extra:?}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
