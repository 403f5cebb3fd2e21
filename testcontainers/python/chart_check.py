"""Checks the manifests `helm template` rendered (read from stdin) and prints a JSON report.

Every document is validated against Kubernetes' JSON schema of its kind (kubernetes-validate, offline,
strict: no field the kind does not have). Kinds Kubernetes does not define (custom resources) are listed,
not validated. The report also says, per kind, which objects there are, and what the production checks
found: each Deployment's probes, security context and resources; values that look like secrets inlined
in a ConfigMap or an env value.
"""
import json
import re
import sys

import kubernetes_validate
import yaml

SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|CREDENTIAL)", re.I)


def main():
    version = kubernetes_validate.latest_version()
    docs = [d for d in yaml.safe_load_all(sys.stdin.read()) if d]
    report = {"kubernetes": version, "objects": {}, "invalid": [], "custom": [], "problems": []}
    for doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        report["objects"].setdefault(kind, []).append(name)
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            report["custom"].append(f"{doc.get('apiVersion')}/{kind}/{name}")
        except kubernetes_validate.ValidationError as e:
            report["invalid"].append(f"{kind}/{name}: {e.message} at {list(e.path)}")
        if kind == "ConfigMap":
            for k, v in (doc.get("data") or {}).items():
                if SECRET_NAME.search(k):
                    report["problems"].append(f"ConfigMap/{name} inlines {k}")
        if kind in ("Deployment", "Job"):
            spec = doc["spec"]["template"]["spec"]
            if not spec.get("securityContext", {}).get("runAsNonRoot"):
                report["problems"].append(f"{kind}/{name}: not runAsNonRoot")
            for c in spec["containers"]:
                sc = c.get("securityContext", {})
                if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation", True):
                    report["problems"].append(f"{kind}/{name}: writable root or privilege escalation")
                if "limits" not in c.get("resources", {}) or "requests" not in c.get("resources", {}):
                    report["problems"].append(f"{kind}/{name}: no resources")
                for e in c.get("env") or []:
                    if SECRET_NAME.search(e["name"]) and "value" in e:
                        report["problems"].append(f"{kind}/{name}: {e['name']} inlined")
                if kind == "Deployment":
                    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                        port = c.get(probe, {}).get("httpGet", {}).get("port")
                        if port != "admin":
                            report["problems"].append(f"Deployment/{name}: {probe} not on the admin port")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
