"""Checks the manifests `helm template` or `kustomize build` rendered (read from stdin) and prints a JSON
report.

    chart_check.py <kubernetes version> <CRD folder> <Strimzi checker (strimzi_check.mjs)>

Every document is validated against the schema of its kind, offline: Kubernetes' own kinds against
Kubernetes' JSON schemas (kubernetes-validate, strict: no field the kind does not have); custom resources
against the openAPIV3Schema of their CustomResourceDefinition in the CRD folder (strict in the same way:
no field the schema does not name, unless it keeps unknown fields), and Strimzi's against Strimzi's own
schemas (Node, @kubernetes-models/strimzi-kafka-operator). A kind with no schema is invalid. The report
also says, per kind, which objects there are, what the production checks found (each workload's probes,
security context and resources; values that look like secrets inlined in a ConfigMap or an env value),
and each KafkaTopic's spec.
"""
import glob
import json
import os
import re
import subprocess
import sys

import jsonschema
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


def strict(schema):
    """`schema` with `additionalProperties: false` wherever it names properties and neither keeps
    unknown fields nor says otherwise: what Kubernetes would prune, the check refuses."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_schemas(folder):
    """(apiVersion, kind) -> strict JSON schema, from every CRD in `folder`."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.yaml"))):
        for crd in yaml.safe_load_all(open(path)):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                schema = v.get("schema", {}).get("openAPIV3Schema")
                if schema:
                    out[(f"{group}/{v['name']}", kind)] = strict(schema)
    return out


def main():
    version = sys.argv[1]
    crds = crd_schemas(sys.argv[2])
    strimzi_check = sys.argv[3]
    docs = [d for d in yaml.safe_load_all(sys.stdin.read()) if d]
    report = {"kubernetes": version, "objects": {}, "invalid": [], "custom": [], "problems": [],
              "workloads": [], "topics": {}}
    strimzi = []
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
    for doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        report["objects"].setdefault(kind, []).append(name)
        namespaces = report.setdefault("namespaces", {}).setdefault(kind, [])
        if doc.get("metadata", {}).get("namespace", "") not in namespaces:
            namespaces.append(doc.get("metadata", {}).get("namespace", ""))
        api = doc.get("apiVersion", "")
        if api.startswith("kafka.strimzi.io/"):
            report["custom"].append(f"{api}/{kind}/{name}")
            strimzi.append(doc)
        elif (api, kind) in crds:
            report["custom"].append(f"{api}/{kind}/{name}")
            for e in jsonschema.Draft7Validator(crds[(api, kind)]).iter_errors(doc):
                report["invalid"].append(f"{kind}/{name}: {e.message} at {list(e.path)}")
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                report["invalid"].append(f"{api}/{kind}/{name}: no schema for this kind")
            except kubernetes_validate.ValidationError as e:
                report["invalid"].append(f"{kind}/{name}: {e.message} at {list(e.path)}")
        if kind == "KafkaTopic":
            report["topics"][doc["spec"].get("topicName", name)] = doc["spec"]
        if kind == "ConfigMap":
            for k, v in (doc.get("data") or {}).items():
                if SECRET_NAME.search(k):
                    report["problems"].append(f"ConfigMap/{name} inlines {k}")
                if k.endswith(".json"):
                    board = json.loads(v)
                    report.setdefault("dashboards", []).append({
                        "configmap": name, "labels": doc["metadata"].get("labels", {}),
                        "uid": board.get("uid"), "title": board.get("title"),
                        "panels": len(board.get("panels", []))})
        if kind == "PrometheusRule":
            report.setdefault("rules", []).extend(
                r for g in doc["spec"]["groups"] for r in g["rules"])
        if kind in ("Deployment", "StatefulSet"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                env = environment(c, configmaps)
                mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
                report["workloads"].append({
                    "name": name,
                    "replicas": doc["spec"].get("replicas"),
                    "binary": c["command"][0].rsplit("/", 1)[-1],
                    "args": c.get("args", []),
                    "env": env,
                    "mounts": mounts,
                })
                # The root filesystem is read-only: a folder the service writes must be a volume.
                state_dir = env.get("CAUSEWAY__PROCESSOR__STATE_DIR")
                if state_dir and not any(state_dir == m or state_dir.startswith(m.rstrip("/") + "/")
                                         for m in mounts):
                    report["problems"].append(f"{kind}/{name}: state_dir {state_dir} is not on a volume")
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
    if strimzi:
        checked = subprocess.run(["node", strimzi_check], input=json.dumps(strimzi), text=True,
                                 capture_output=True, check=False)
        if checked.returncode != 0:
            report["invalid"].append(f"the Strimzi check failed: {checked.stderr.strip()}")
        else:
            report["invalid"].extend(json.loads(checked.stdout))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
