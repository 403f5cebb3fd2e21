"""Runs every dashboard panel query and every rule of the chart against a real Prometheus and prints a
JSON report.

    prom_check.py <prometheus url> <dashboards dir> <rules file> <seconds>

Each panel target's expression (Grafana's `$namespace` variable read as "all") and each recording rule
is asked of Prometheus until it answers with data or `seconds` pass; each alert expression must be
accepted by Prometheus, and the recorded signals it compares must hold data. The report lists what
returned nothing or was refused.
"""
import glob
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

SIGNAL = re.compile(r"causeway:[a-z0-9_:]+")

# What the workload must have moved (not only series shown at zero): each returns data only if so.
MOVED = [
    'causeway_service_ready == 1',
    'causeway_processor_commands_total{outcome="accepted"} > 0',
    'causeway_processor_commands_total{outcome="rejected"} > 0',
    'causeway_processor_transactions_total{result="committed"} > 0',
    'causeway_consumer_records_total{outcome="written"} > 0',
    'causeway_consumer_batch_seconds_count > 0',
    'causeway_projection_freshness_seconds_count > 0',
    'causeway_http_requests_total{route="/v1/commands/{aggregate}/{command}", status="202"} > 0',
    'causeway_dlq_letters_total{class="poison"} > 0',
    'causeway_dlq_replays_total{trigger="operator"} > 0',
    'causeway_dlq_discards_total > 0',
    'causeway_saga_finished_total{status="completed"} > 0',
    'causeway_saga_finished_total{status="compensated"} > 0',
    'causeway_saga_compensations_total > 0',
    'causeway_saga_step_seconds_count > 0',
    'causeway_processor_transaction_seconds_count > 0',
]


def query(url, expr):
    """(ok, series count or error) of an instant query."""
    data = urllib.parse.urlencode({"query": expr}).encode()
    try:
        with urllib.request.urlopen(url + "/api/v1/query", data=data, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        return False, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        return False, str(e)
    if body.get("status") != "success":
        return False, body.get("error", "no status")
    return True, len(body["data"]["result"])


def checks(dashboards, rules):
    """(what, expression, must return data) of every query to run."""
    out = []
    for path in sorted(glob.glob(os.path.join(dashboards, "*.json"))):
        board = json.load(open(path))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$namespace", ".*")
                out.append((f"{board['title']} / {panel['title']} / {target['refId']}", expr, True))
    for expr in MOVED:
        out.append((f"moved {expr}", expr, True))
    for group in yaml.safe_load(open(rules))["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                out.append((f"rule {rule['record']} (expression)", rule["expr"], True))
                out.append((f"rule {rule['record']} (recorded)", rule["record"], True))
            else:
                out.append((f"alert {rule['alert']}", rule["expr"], False))
                for signal in sorted(set(SIGNAL.findall(rule["expr"]))):
                    out.append((f"alert {rule['alert']} signal {signal}", signal, True))
    return out


def main():
    url, dashboards, rules, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    todo = checks(dashboards, rules)
    results = {}
    deadline = time.time() + seconds
    while True:
        for what, expr, needs_data in todo:
            if what in results and results[what]["ok"]:
                continue
            ok, answer = query(url, expr)
            good = ok and (not needs_data or answer > 0)
            results[what] = {"ok": good, "expr": expr, "answer": answer}
        if all(r["ok"] for r in results.values()) or time.time() > deadline:
            break
        time.sleep(2)
    report = {
        "checked": len(todo),
        "panels": sum(1 for w, _, _ in todo if " / " in w),
        "alerts": sum(1 for w, _, _ in todo if w.startswith("alert ") and " signal " not in w),
        "moved": sum(1 for w, _, _ in todo if w.startswith("moved ")),
        "failed": {w: r for w, r in results.items() if not r["ok"]},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
