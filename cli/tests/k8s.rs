//! k8s/: the kustomize base and its overlays build; every resource validates offline against the schema
//! of its kind (NetworkPolicies against Kubernetes', ScaledObjects and TriggerAuthentications against
//! KEDA's CRDs, KafkaTopics against Strimzi's); the KafkaTopics are what `causeway topics manifests`
//! generates from domains/orders/topology.toml, and in every overlay they agree with the topology:
//! every topic, its partitions, and its configs as `causeway topics apply` creates them (dev: one
//! replica, min.insync.replicas 1), in the Kafka cluster's namespace (where Strimzi's topic operator
//! watches), the rest in the suite's.

use std::collections::BTreeMap;
use std::process::Command;

use causeway_kafka::topology::Topology;
use causeway_testcontainers::manifests;
use causeway_testcontainers::native::repo_root;
use serde_json::Value;

fn kustomize(overlay: &str) -> String {
    let out = Command::new(manifests::tool("kustomize"))
        .arg("build")
        .arg(repo_root().join("k8s").join(overlay))
        .output()
        .unwrap_or_else(|e| panic!("kustomize: {e}"));
    assert!(
        out.status.success(),
        "kustomize build k8s/{overlay}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn topology() -> Topology {
    Topology::load(&repo_root().join("domains/orders/topology.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `causeway topics manifests` with `args`, from the repository's root.
fn manifests(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["topics", "manifests"])
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("causeway: {e}"))
}

#[test]
fn the_committed_topics_are_what_the_topology_generates() {
    let out = manifests(&[
        "--file",
        "domains/orders/topology.toml",
        "--cluster",
        "causeway",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(repo_root().join("k8s/base/topics.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        committed,
        "k8s/base/topics.yaml is stale: causeway topics manifests --file domains/orders/topology.toml \
         --cluster causeway > k8s/base/topics.yaml"
    );

    // Bad input: exit 2 with the reason.
    let bad = manifests(&["--cluster", "Not_A_Name"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a Kubernetes name"));
}

#[test]
fn every_overlay_builds_validates_and_agrees_with_the_topology() {
    let topology = topology();
    for (overlay, namespace, replicas, scaled) in [
        ("base", "", None, 4),
        ("overlays/dev", "causeway-dev", Some(1), 4),
        ("overlays/prod", "causeway", None, 4),
    ] {
        let built = kustomize(overlay);
        let report: Value =
            serde_json::from_str(&manifests::check(&built)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            report["invalid"],
            Value::Array(vec![]),
            "{overlay}: {report:#}"
        );
        assert_eq!(
            report["objects"]["ScaledObject"]
                .as_array()
                .map_or(0, Vec::len),
            scaled,
            "{overlay}: {report}"
        );
        assert!(
            report["objects"]["NetworkPolicy"]
                .as_array()
                .map_or(0, Vec::len)
                >= 4,
            "{overlay}: {report}"
        );
        let topics_namespace = if namespace.is_empty() { "" } else { "kafka" };
        // Every kind there is, each in its namespace: the topics where Strimzi watches, the rest in
        // the suite's.
        let kinds: Vec<String> = report["namespaces"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for kind in &kinds {
            let want = if kind == "KafkaTopic" {
                topics_namespace
            } else {
                namespace
            };
            assert_eq!(
                report["namespaces"][kind],
                serde_json::json!([want]),
                "{overlay}: the namespace of every {kind}"
            );
        }
        assert!(kinds.len() >= 3, "{overlay}: {kinds:?}");
        let topics = report["topics"].as_object().cloned().unwrap_or_default();
        assert_eq!(
            topics.len(),
            topology.topics.len(),
            "{overlay}: every topic of the topology, no other: {:?}",
            topics.keys().collect::<Vec<_>>()
        );
        for spec in &topology.topics {
            let got = topics
                .get(&spec.name)
                .unwrap_or_else(|| panic!("{overlay}: no KafkaTopic for {}", spec.name));
            let want_replicas = replicas.unwrap_or(topology.replication_of(spec));
            assert_eq!(
                got["partitions"],
                topology.partitions_of(spec),
                "{overlay} {}",
                spec.name
            );
            assert_eq!(got["replicas"], want_replicas, "{overlay} {}", spec.name);
            let mut want: BTreeMap<String, String> = topology.configs_of(spec);
            if replicas.is_some() {
                want.insert("min.insync.replicas".into(), "1".into());
            }
            let have: BTreeMap<String, String> = got["config"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect();
            assert_eq!(have, want, "{overlay} {}", spec.name);
        }
    }
}
