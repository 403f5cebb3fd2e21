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

step "A command through the gateway (POST 127.0.0.1:18080/v1/commands/order/PlaceOrder)"
curl -s -X POST 127.0.0.1:18080/v1/commands/order/PlaceOrder -H 'Content-Type: application/json' \
  -d '{"order_id":"demo-1","customer_id":"alice","lines":[{"sku":"tea","quantity":2,"unit_price_cents":450}],"currency":"EUR","payment_account_id":"acc-alice"}' \
  | sed 's/^/  /'; echo
echo "  and a bad one:"
curl -s -X POST 127.0.0.1:18080/v1/commands/order/PlaceOrder -H 'Content-Type: application/json' \
  -d '{"order_id":"demo-2","lines":[{"sku":"tea","quantity":"two"}]}' | sed 's/^/  /'; echo

step "A service's metrics (curl -s 127.0.0.1:9401/metrics)"
curl -s 127.0.0.1:9401/metrics | grep -E '^causeway_' | sed 's/^/  /'

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
  curl -s -X POST 127.0.0.1:18080/v1/commands/<aggregate>/<Command> -d '{...}'
                                            send a command (status: GET /v1/commands/<command_id>)
  make status                               what runs, and whether it is ready
  tail -f .stack/services/*.log             the services' JSON logs
  make down                                 stop the services and the stack
EOT
