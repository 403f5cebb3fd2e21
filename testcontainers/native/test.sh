#!/usr/bin/env bash
# make test: run every test against a stack of the tests' own (folder .stack/test, ports 2xxxx), so a
# developer's running demo stack (.stack, ports 1xxxx) is never touched and no test topic or subject
# lands in it. Starts that stack if it is not running, and afterwards stops it and deletes its data (the
# jars and the Python clients stay, for the next run).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

export CAUSEWAY_STACK_DIR=${CAUSEWAY_TEST_STACK_DIR:-$repo/.stack/test}
export CAUSEWAY_STACK_KAFKA_PORT=${CAUSEWAY_TEST_KAFKA_PORT:-29092}
export CAUSEWAY_STACK_KAFKA_CONTROLLER_PORT=${CAUSEWAY_TEST_KAFKA_CONTROLLER_PORT:-29093}
export CAUSEWAY_STACK_REDIS_PORT=${CAUSEWAY_TEST_REDIS_PORT:-26379}
export CAUSEWAY_STACK_CLICKHOUSE_HTTP_PORT=${CAUSEWAY_TEST_CLICKHOUSE_HTTP_PORT:-28123}
export CAUSEWAY_STACK_CLICKHOUSE_TCP_PORT=${CAUSEWAY_TEST_CLICKHOUSE_TCP_PORT:-29000}
export CAUSEWAY_STACK_REGISTRY_PORT=${CAUSEWAY_TEST_REGISTRY_PORT:-28081}
export CAUSEWAY_STACK_REGISTRY_ADMIN_PORT=${CAUSEWAY_TEST_REGISTRY_ADMIN_PORT:-29081}

started=0
if ! bash "$here/stack.sh" status >/dev/null 2>&1; then
  bash "$here/stack.sh" up || exit 1
  started=1
fi

cargo test --workspace --all-targets --locked --no-fail-fast
status=$?

if [ "$started" -eq 1 ]; then
  bash "$here/stack.sh" down
  rm -rf "$CAUSEWAY_STACK_DIR/kafka/data" "$CAUSEWAY_STACK_DIR/kafka/controller-data" \
    "$CAUSEWAY_STACK_DIR/kafka/cluster.id" "$CAUSEWAY_STACK_DIR/kafka/layout" "$CAUSEWAY_STACK_DIR/clickhouse/data"
fi
exit $status
