#!/usr/bin/env bash
# make demo (after setup, build and up): provision the topics, start every service, and show the result.
# Grows with each capability into the full sample workload.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
dir=${CAUSEWAY_STACK_DIR:-$repo/.stack}
# shellcheck disable=SC1091
. "$dir/stack.env"
causeway=$repo/target/debug/causeway
# The services' ports (services.sh): the configs' plus CAUSEWAY_SERVICES_PORT_OFFSET.
offset=${CAUSEWAY_SERVICES_PORT_OFFSET:-0}
gateway=127.0.0.1:$((18080 + offset)) read_api=127.0.0.1:$((18083 + offset)) dlq_api=127.0.0.1:$((18086 + offset))
processor_admin=127.0.0.1:$((9402 + offset)) projector_admin=127.0.0.1:$((9404 + offset))
orchestrator_admin=127.0.0.1:$((9405 + offset))
export CAUSEWAY_DLQ_URL=http://$dlq_api

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Provisioning topics from domains/orders/topology.toml (single broker: replication 1)"
"$causeway" topics apply --file domains/orders/topology.toml --replication-factor 1 \
  --bootstrap-servers "$KAFKA_BOOTSTRAP"

step "Registering the Avro contracts of avro/ with the schema registry (FULL_TRANSITIVE)"
"$causeway" schema register --registry "$REGISTRY_URL"

step "Starting the services"
bash "$here/services.sh" start

step "The stack"
bash "$here/stack.sh" status 2>&1 | sed 's/^stack: /  /'

step "The services (admin endpoints: /healthz /readyz /metrics)"
bash "$here/services.sh" status | sed 's/^/  /'

step "A sample workload through the gateway (POST $gateway/v1/commands/<aggregate>/<Command>)"
run=$(date +%s)
# POST a command, then wait for its result on the status API; one line per command.
send() {
  local aggregate=$1 command=$2 body=$3 id="demo-$run-$4"
  local answer
  answer=$(curl -s -X POST "$gateway/v1/commands/$aggregate/$command" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $id" -d "$body")
  case $answer in
    *'"status_url"'*) ;;
    *) printf '  %-18s %-24s refused: %s\n' "$command" "" "$answer"; return ;;
  esac
  local status_url
  status_url=$(printf '%s' "$answer" | "$dir/venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["status_url"])')
  curl -s "$gateway$status_url?wait_ms=15000" | "$dir/venv/bin/python" -c '
import json, sys
r = json.load(sys.stdin)
what = {"accepted": "accepted, version %s" % r.get("version"),
        "rejected": "rejected: %s (%s)" % (r.get("code"), r.get("reason")),
        "dead_lettered": "dead-lettered: %s" % r.get("reason"),
        "pending": "pending (no result yet)"}[r["status"]]
print("  %-18s %-24s %s" % (sys.argv[1], r.get("aggregate_id", ""), what))' "$command"
}
acct="acc-$run" order="order-$run" short="short-$run"
send payment   OpenAccount      "{\"account_id\":\"$acct\",\"currency\":\"EUR\"}" 1
send payment   Deposit          "{\"account_id\":\"$acct\",\"amount_cents\":10000}" 2
send inventory AddStock         "{\"sku\":\"tea-$run\",\"quantity\":10}" 3
send inventory AddStock         "{\"sku\":\"mug-$run\",\"quantity\":1}" 4
echo "  two orders; the OrderFulfilment saga takes each from here (reserve, pay, confirm, capture):"
send order     PlaceOrder       "{\"order_id\":\"$order\",\"customer_id\":\"alice\",\"lines\":[{\"sku\":\"tea-$run\",\"quantity\":2,\"unit_price_cents\":450}],\"currency\":\"EUR\",\"payment_account_id\":\"$acct\"}" 5
send order     PlaceOrder       "{\"order_id\":\"$short\",\"customer_id\":\"alice\",\"lines\":[{\"sku\":\"tea-$run\",\"quantity\":1,\"unit_price_cents\":450},{\"sku\":\"mug-$run\",\"quantity\":3,\"unit_price_cents\":1200}],\"currency\":\"EUR\",\"payment_account_id\":\"$acct\"}" 6
echo "  and what the rules and the contracts refuse:"
send inventory ReserveStock     "{\"sku\":\"tea-$run\",\"order_id\":\"other-$run\",\"quantity\":50}" 8
send payment   Deposit          "{\"account_id\":\"$acct\",\"amount_cents\":\"lots\"}" 10
echo "  and a resend of the first command (same Idempotency-Key): its first answer, no new event:"
send payment   OpenAccount      "{\"account_id\":\"$acct\",\"currency\":\"EUR\"}" 1

step "The sagas (saga-orchestrator: causeway saga show|list|stuck)"
saga() { "$causeway" saga "$@" --bootstrap-servers "$KAFKA_BOOTSTRAP" --registry "$REGISTRY_URL"; }
saga_status() {
  saga show "$1" --json 2>/dev/null | "$dir/venv/bin/python" -c '
import json, sys
print(json.load(sys.stdin)["status"])' 2>/dev/null || true
}
# Wait (at most 30 s) until both orders' sagas are done.
deadline=$((SECONDS + 30))
until [ "$(saga_status "$order") $(saga_status "$short")" = "completed compensated" ]; do
  if [ $SECONDS -ge $deadline ]; then
    echo "  the sagas of $order and $short are not done after 30 s; see .stack/services/saga-orchestrator.log"
    break
  fi
  sleep 0.2
done
echo "  causeway saga show $order"
saga show "$order" | sed 's/^/    /' || true
echo "  causeway saga show $short   (mug-$run: 3 wanted, 1 in stock)"
saga show "$short" | sed 's/^/    /' || true
echo "  causeway saga list --newer-than 10m"
saga list --newer-than 10m | sed 's/^/    /' || true
echo "  a command to the order the saga confirmed, with a stale expected version:"
send order     ShipOrder        "{\"order_id\":\"$order\",\"carrier\":\"DHL\",\"tracking_number\":\"T1\",\"expected_version\":1}" 9

step "The read models in Redis (projector-redis: GET $read_api/v1/read/<projection>/<id>)"
# Read your writes: ConfirmOrder gave the order version 2; the read waits (at most 5 s) until it is applied.
read_model() {
  curl -s "$read_api$1" | "$dir/venv/bin/python" -c '
import json, sys
d = json.load(sys.stdin)
if "items" in d:
    print("  %-44s %s" % (sys.argv[1], ", ".join("%s (%s, version %s)" % (i["id"], i["fields"].get("status"), i["version"]) for i in d["items"])))
elif "error" in d:
    print("  %-44s %s" % (sys.argv[1], d["error"]))
else:
    print("  %-44s version %s: %s" % (sys.argv[1], d["version"], json.dumps(d["fields"], sort_keys=True)))' "$1"
}
read_model "/v1/read/order-by-id/$order?min_version=2&wait_ms=5000"
read_model "/v1/read/order-by-id/$short?min_version=2&wait_ms=5000"
read_model "/v1/read/stock-by-sku/tea-$run?min_version=4&wait_ms=5000"
read_model "/v1/read/stock-by-sku/mug-$run?min_version=1&wait_ms=5000"
read_model "/v1/read/account-balance/$acct?min_version=4&wait_ms=5000"
read_model "/v1/read/order-by-id/index/orders-by-customer/alice?limit=3"

step "Analytics in ClickHouse (projector-clickhouse): the daily sales rollup and the event log"
# The projector writes in batches: wait (at most 15 s) until this run's confirmed order is in.
for _ in $(seq 1 75); do
  n=$(curl -s "$CLICKHOUSE_URL/" --data-binary "SELECT count() FROM causeway_order_by_id WHERE id = '$order' AND status = 'CONFIRMED'" || true)
  [ "$n" = 1 ] && break
  sleep 0.2
done
echo "  SELECT * FROM causeway_daily_sales ORDER BY day"
curl -s "$CLICKHOUSE_URL/" --data-binary "SELECT day, currency, orders, total_cents FROM causeway_daily_sales ORDER BY day FORMAT PrettyCompactMonoBlock" | sed 's/^/  /'
echo "  SELECT aggregate_type, count() FROM causeway_events FINAL GROUP BY aggregate_type"
curl -s "$CLICKHOUSE_URL/" --data-binary "SELECT aggregate_type, count() AS events FROM causeway_events FINAL GROUP BY aggregate_type ORDER BY aggregate_type FORMAT PrettyCompactMonoBlock" | sed 's/^/  /'

step "Dead letters (dlq-reprocessor: causeway dlq ..., web UI at http://$dlq_api/)"
# A record that is not a command at all, produced straight onto the commands topic: the processor
# dead-letters it and goes on; the reprocessor indexes it.
export CAUSEWAY_DLQ_TOKEN
CAUSEWAY_DLQ_TOKEN=$(cat "$dir/dlq-token")
printf 'not an avro record' | kcat -b "$KAFKA_BOOTSTRAP" -t orders.order.commands -k "bad-$run" -P
letter=""
for _ in $(seq 1 60); do
  letter=$("$causeway" dlq list --key "bad-$run" --json 2>/dev/null | "$dir/venv/bin/python" -c '
import json, sys
letters = json.load(sys.stdin).get("letters", [])
print(letters[0]["id"] if letters else "")' || true)
  [ -n "$letter" ] && break
  sleep 0.5
done
if [ -z "$letter" ]; then
  echo "  the dead letter of bad-$run did not show up; see .stack/services/dlq-reprocessor.log"
else
  echo "  causeway dlq list --key bad-$run"
  "$causeway" dlq list --key "bad-$run" | sed 's/^/  /'
  echo "  causeway dlq show $letter"
  ("$causeway" dlq show "$letter" | sed 's/^/    /' | head -16) || true
  echo "  causeway dlq discard $letter   (recorded on causeway.dlq-audit)"
  "$causeway" dlq discard "$letter" | sed 's/^/  /'
fi

step "What happened to $order (causeway events order $order)"
for _ in $(seq 1 20); do
  "$causeway" events order "$order" --json 2>/dev/null | grep -q '"outcome":"accepted"' && break
  sleep 0.5
done
"$causeway" events order "$order" | sed 's/^/  /'

step "The processor's metrics (curl -s $processor_admin/metrics)"
curl -s "$processor_admin/metrics" | grep -E '^causeway_processor_(commands|transactions)_total' | sed 's/^/  /'

step "The orchestrator's metrics (curl -s $orchestrator_admin/metrics)"
curl -s "$orchestrator_admin/metrics" | grep -E '^causeway_saga_(instances|finished_total|compensations_total)' | sed 's/^/  /'

cat <<EOT

Causeway is running: Kafka at $KAFKA_BOOTSTRAP, Redis at $REDIS_URL, ClickHouse at $CLICKHOUSE_URL,
the schema registry at $REGISTRY_URL.

What you can do next:
  target/debug/causeway topics plan --replication-factor 1
                                            compare the cluster with domains/orders/topology.toml
  target/debug/causeway --help              the operator CLI
  target/debug/causeway schema check        the contracts against their published versions
  kcat -b $KAFKA_BOOTSTRAP -L               list the topics
  curl -s $REGISTRY_URL/subjects     the registry's subjects (Confluent's REST API)
  curl -s -X POST $gateway/v1/commands/<aggregate>/<Command> -d '{...}'
                                            send a command (status: GET /v1/commands/<command_id>?wait_ms=5000)
  curl -s $processor_admin/metrics | grep causeway_processor
                                            what the aggregate processor did
  curl -s $read_api/v1/read/order-by-id/<order id>?min_version=<version>&wait_ms=5000
                                            a read model, once the version a command gave is applied
  curl -s $read_api/v1/openapi.json   the read API
  target/debug/causeway projections status  how far projector-redis is behind (--group projector-clickhouse)
  target/debug/causeway projections rebuild order-by-id [--store clickhouse]
                                            rebuild a read model (Redis, or its ClickHouse table) from offset 0
                                            while it serves, then switch
  curl -s $CLICKHOUSE_URL/ --data-binary 'SELECT * FROM causeway_daily_sales'
                                            the daily sales rollup (also causeway_events, causeway_order_by_id, ...)
  curl -s $projector_admin/metrics | grep causeway_consumer
                                            what projector-redis did, and its lag
  export CAUSEWAY_DLQ_TOKEN=$(cat .stack/dlq-token)
  target/debug/causeway dlq list            dead letters (show, replay, discard, counts); web UI: http://$dlq_api/
  target/debug/causeway events order <id>   an aggregate's events with their commands, results and trace ids
  target/debug/causeway saga show <order id>
                                            an order's fulfilment: status, step, what it awaits, deadlines, history
  target/debug/causeway saga stuck --longer-than 30s
                                            sagas stuck in one step (list --status running,compensating: all open)
  make status                               what runs, and whether it is ready
  tail -f .stack/services/*.log             the services' JSON logs
  make down                                 stop the services and the stack
EOT
