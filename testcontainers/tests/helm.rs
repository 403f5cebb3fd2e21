//! The Helm chart (helm/causeway): `helm lint` and `helm template` with the default values and with a
//! production-like values file; every rendered manifest validated offline against Kubernetes' JSON schema
//! of its kind (kubernetes-validate, strict), with the checks production wants (probes on the admin port,
//! non-root, read-only root filesystem, resources, secrets referenced and never inlined); bad values
//! refused by `values.schema.json` with the message a user sees. Helm is built by `make setup` into
//! `.stack/tools/bin`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use causeway_testcontainers::native::{python, python_script, repo_root};
use serde_json::Value;

/// The Kubernetes version the chart is rendered for (its `kubeVersion` says at least 1.25).
const KUBE_VERSION: &str = "1.33.0";

fn helm() -> PathBuf {
    let helm = repo_root().join(".stack/tools/bin/helm");
    assert!(
        helm.exists(),
        "{} is missing: `make setup` builds it (go install helm.sh/helm/v3/cmd/helm)",
        helm.display()
    );
    helm
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

/// `helm template` with `extra` arguments, checked by chart_check.py: its report.
fn render_and_check(extra: &[&str]) -> Value {
    let chart = chart();
    let mut args = vec![
        "template",
        "causeway",
        &chart,
        "--kube-version",
        KUBE_VERSION,
    ];
    args.extend_from_slice(extra);
    let (ok, manifests, err) = run_helm(&args);
    assert!(ok, "helm template {extra:?} failed:\n{err}");
    let mut check = Command::new(python())
        .arg(python_script("chart_check.py"))
        .arg(KUBE_VERSION)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("chart_check.py: {e}"));
    {
        use std::io::Write as _;
        let mut stdin = check.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        stdin
            .write_all(manifests.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = check
        .wait_with_output()
        .unwrap_or_else(|e| panic!("chart_check.py: {e}"));
    assert!(
        out.status.success(),
        "chart_check.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"))
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
    // hook; no custom resource unless asked for.
    for kind in ["Service", "ConfigMap", "ServiceAccount"] {
        assert_eq!(count(&defaults, kind), 7, "{kind}: {defaults}");
    }
    assert_eq!(count(&defaults, "HorizontalPodAutoscaler"), 1, "{defaults}");
    assert_eq!(count(&defaults, "PodDisruptionBudget"), 5, "{defaults}");
    assert_eq!(count(&defaults, "Job"), 2, "{defaults}");
    assert_eq!(defaults["custom"], Value::Array(vec![]), "{defaults}");

    assert_eq!(count(&defaults, "Deployment"), 5, "{defaults}");
    assert_eq!(count(&defaults, "StatefulSet"), 2, "{defaults}");

    let production = render_and_check(&["-f", &production_values()]);
    assert_clean(&production, "production values");
    assert_eq!(count(&production, "ServiceMonitor"), 7, "{production}");
    // The only kinds Kubernetes' schemas do not know are the ServiceMonitors asked for.
    let custom = production["custom"].as_array().cloned().unwrap_or_default();
    assert_eq!(custom.len(), 7, "{production}");
    assert!(
        custom.iter().all(|c| c
            .as_str()
            .is_some_and(|c| c.starts_with("monitoring.coreos.com/v1/ServiceMonitor/"))),
        "{production}"
    );
}

#[test]
fn secrets_are_referenced_never_inlined() {
    let chart = chart();
    let production = production_values();
    let (ok, manifests, err) = run_helm(&[
        "template",
        "causeway",
        &chart,
        "--kube-version",
        KUBE_VERSION,
        "-f",
        &production,
    ]);
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
    let chart = chart();
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
    ] {
        let (ok, _, err) = run_helm(&[
            "template",
            "causeway",
            &chart,
            "--kube-version",
            KUBE_VERSION,
            "--set",
            set,
        ]);
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
