//! Kubernetes manifests checked offline, as the chart's and k8s/'s tests do: the tools `make setup`
//! provides (Helm, kustomize, the CRDs, Strimzi's models) and `testcontainers/python/chart_check.py`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::native::{python, python_script, repo_root};

/// The Kubernetes version manifests are validated for (the chart's `kubeVersion` says at least 1.25).
pub const KUBE_VERSION: &str = "1.33.0";

/// A tool `make setup` built into `.stack/tools/bin` (helm, kustomize, jaeger).
pub fn tool(name: &str) -> PathBuf {
    let path = repo_root().join(".stack/tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: `make setup` builds it",
        path.display()
    );
    path
}

/// The CRDs `make setup` fetched (prometheus-operator's, KEDA's).
pub fn crd_folder() -> PathBuf {
    let dir = repo_root().join(".stack/tools/crds");
    assert!(
        dir.join("monitoring.coreos.com_servicemonitors.yaml")
            .exists()
            && dir.join("keda.sh_scaledobjects.yaml").exists(),
        "{} lacks the CRDs: `make setup` fetches them",
        dir.display()
    );
    dir
}

/// The checker of Strimzi's resources (its models installed by `make setup`).
pub fn strimzi_check() -> PathBuf {
    let dir = repo_root().join("testcontainers/crds");
    assert!(
        dir.join("node_modules/@kubernetes-models/strimzi-kafka-operator")
            .exists(),
        "Strimzi's models are not installed in {}: `make setup` installs them",
        dir.display()
    );
    dir.join("strimzi_check.mjs")
}

/// `manifests` (a YAML stream) checked by chart_check.py: its JSON report, as text.
pub fn check(manifests: &str) -> String {
    let mut check = Command::new(python())
        .arg(python_script("chart_check.py"))
        .arg(KUBE_VERSION)
        .arg(crd_folder())
        .arg(strimzi_check())
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}
