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

# What a Secret or the downward API would put in an environment variable, for `--check-config`.
STAND_INS = {
    "CAUSEWAY__ACCESS__TOKENS": '[{ name = "operator", token = "0123456789abcdef0123" }]',
    "CAUSEWAY__REDIS__URL": "redis://:secret@redis:6379",
    "POD_NAME": "causeway-0",
    "POD_NAMESPACE": "causeway",
    "POD_IP": "10.0.0.7",
}


def environment(container, configmaps):
    """The environment `container` starts with: its ConfigMaps, then its env (references expanded)."""
    env = {}
    for source in container.get("envFrom") or []:
        name = source.get("configMapRef", {}).get("name")
        env.update(configmaps.get(name, {}))
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), ""), e["value"])
        else:
            env[e["name"]] = STAND_INS.get(e["name"], "secret")
    return env


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else kubernetes_validate.latest_version()
    docs = [d for d in yaml.safe_load_all(sys.stdin.read()) if d]
    report = {"kubernetes": version, "objects": {}, "invalid": [], "custom": [], "problems": [],
              "workloads": []}
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
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
        if kind in ("Deployment", "StatefulSet"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                report["workloads"].append({
                    "name": name,
                    "binary": c["command"][0].rsplit("/", 1)[-1],
                    "args": c.get("args", []),
                    "env": environment(c, configmaps),
                })
        if kind in ("Deployment", "StatefulSet", "Job"):
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
                if kind in ("Deployment", "StatefulSet"):
                    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                        port = c.get(probe, {}).get("httpGet", {}).get("port")
                        if port != "admin":
                            report["problems"].append(f"Deployment/{name}: {probe} not on the admin port")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
