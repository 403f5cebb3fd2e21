"""Fetches one trace from Jaeger's query API and checks that it holds a span of every hop of a command
through the suite, each a child of the hop before it, in time order. Prints a JSON report.

    trace_check.py <jaeger query url> <trace id> <seconds>

The hops of a PlaceOrder: the gateway's submit; the aggregate processor on the order's commands; both
projectors and the saga orchestrator on what that produced (events, the saga's inbox); the aggregate
processor on the next aggregate's commands (inventory), sent by the saga. Spans are exported in
batches: the trace is asked for again until every hop is there or `seconds` pass.
"""
import json
import sys
import time
import urllib.error
import urllib.request

# (hop, service, operation, topic the span's record came from, the hop its parent span is)
HOPS = [
    ("gateway", "command-gateway", "command-gateway submit", None, None),
    ("order", "aggregate-processor", "aggregate-processor process", "orders.order.commands", "gateway"),
    ("redis", "projector-redis", "projector-redis apply", "orders.order.events", "order"),
    ("clickhouse", "projector-clickhouse", "projector-clickhouse apply", "orders.order.events", "order"),
    ("saga", "saga-orchestrator", "saga-orchestrator process", "orders.order-fulfilment.inbox", "order"),
    ("inventory", "aggregate-processor", "aggregate-processor process", "orders.inventory.commands", "saga"),
]


def fetch(url, trace_id):
    try:
        with urllib.request.urlopen(f"{url}/api/traces/{trace_id}", timeout=10) as r:
            body = json.load(r)
    except (urllib.error.URLError, OSError, ValueError):
        return []
    out = []
    for trace in body.get("data") or []:
        processes = trace.get("processes", {})
        for span in trace.get("spans", []):
            tags = {t["key"]: t["value"] for t in span.get("tags", [])}
            parents = [r["spanID"] for r in span.get("references", []) if r.get("refType") == "CHILD_OF"]
            out.append({
                "id": span["spanID"],
                "service": processes.get(span.get("processID"), {}).get("serviceName"),
                "operation": span["operationName"],
                "topic": tags.get("messaging.destination.name"),
                "parent": parents[0] if parents else None,
                "start": span["startTime"],
            })
    return out


def traces_of(url, service):
    """How many traces Jaeger holds with a span of `service` (at most 1000)."""
    try:
        with urllib.request.urlopen(f"{url}/api/traces?service={service}&limit=1000&lookback=1h",
                                    timeout=10) as r:
            return len(json.load(r).get("data") or [])
    except (urllib.error.URLError, OSError, ValueError):
        return 0


def match(spans):
    """The span of each hop found so far: a span of its service, operation and topic whose parent is
    the span found for the hop before it."""
    found = {}
    for hop, service, operation, topic, parent in HOPS:
        for s in sorted(spans, key=lambda s: s["start"]):
            if (s["service"], s["operation"], s["topic"]) != (service, operation, topic):
                continue
            if parent is not None and (parent not in found or s["parent"] != found[parent]["id"]):
                continue
            found[hop] = s
            break
    return found


def main():
    url, trace_id, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    deadline = time.time() + seconds
    while True:
        spans = fetch(url, trace_id)
        found = match(spans)
        if len(found) == len(HOPS) or time.time() > deadline:
            break
        time.sleep(2)
    out_of_order = [
        hop for hop, _, _, _, parent in HOPS
        if hop in found and parent in found and found[hop]["start"] < found[parent]["start"]
    ]
    print(json.dumps({
        "spans": len(spans),
        "services": sorted({s["service"] for s in spans if s["service"]}),
        "found": {h: {k: s[k] for k in ("service", "operation", "topic", "start")} for h, s in found.items()},
        "missing": [h for h, *_ in HOPS if h not in found],
        "out_of_order": out_of_order,
        # Requests that came without a trace begin one at the gateway.
        "gateway_traces": traces_of(url, "command-gateway"),
        "seen": sorted({f"{s['service']} {s['operation']} {s['topic']}" for s in spans}),
    }))


if __name__ == "__main__":
    main()
