#!/usr/bin/env bash
# Runs the suite's services as local processes against the native stack (make demo uses it). The schema
# registry is part of the stack itself (stack.sh), since the tests need it too.
#
#   services.sh start    start every service not yet running (binaries from target/debug), wait for /readyz
#   services.sh stop     SIGTERM each service this script started, wait for it to exit
#   services.sh status   one line per service: pid, admin address, ready or not
#
# Each service runs with its sample config (services/<name>/<name>.toml), pointed at the running stack
# through CAUSEWAY__* overrides; logs and PIDs live in <stack dir>/services/. Its ports are those of the
# config (admin 9401-9406; HTTP 18080, 18083, 18086) plus CAUSEWAY_SERVICES_PORT_OFFSET (default 0): a
# second set of services (a test's) runs beside the demo's with another offset and a stack of its own
# (CAUSEWAY_STACK_DIR; on the same stack they would share consumer groups and transactional ids). Extra
# environment for every service: CAUSEWAY_SERVICES_ENV (NAME=VALUE lines, e.g.
# OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${CAUSEWAY_STACK_DIR:-$repo/.stack}
run=$dir/services
bin=${CAUSEWAY_BIN_DIR:-$repo/target/debug}

offset=${CAUSEWAY_SERVICES_PORT_OFFSET:-0}
# name admin-port http-port (- when it has none)
services=(
  "command-gateway $((9401 + offset)) $((18080 + offset))"
  "aggregate-processor $((9402 + offset)) -"
  "projector-clickhouse $((9403 + offset)) -"
  "projector-redis $((9404 + offset)) $((18083 + offset))"
  "saga-orchestrator $((9405 + offset)) -"
  "dlq-reprocessor $((9406 + offset)) $((18086 + offset))"
)

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ]; }

# The operator API's token of this stack (made once, kept in the stack folder; `causeway dlq` reads it
# from CAUSEWAY_DLQ_TOKEN).
dlq_token() {
  local file=$dir/dlq-token
  if [ ! -s "$file" ]; then
    (umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$file")
  fi
  cat "$file"
}

start() {
  [ -f "$dir/stack.env" ] || die "the stack is not running: make up"
  # shellcheck disable=SC1091
  . "$dir/stack.env"
  mkdir -p "$run"
  for entry in "${services[@]}"; do
    set -- $entry
    local name=$1 port=$2 http=$3
    [ -x "$bin/$name" ] || die "$bin/$name is missing: make build"
    if alive "$run/$name.pid"; then continue; fi
    # Only the sections a service has may be overridden: an unknown key is a config error.
    local extra=()
    [ "$http" = - ] || extra+=("CAUSEWAY__HTTP__LISTEN=127.0.0.1:$http")
    while IFS= read -r line; do
      [ -z "$line" ] && continue
      [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "CAUSEWAY_SERVICES_ENV: not NAME=VALUE: $line"
      extra+=("$line")
    done <<< "${CAUSEWAY_SERVICES_ENV:-}"
    case $name in
      command-gateway) extra+=("CAUSEWAY__GATEWAY__REGISTRY_URL=$REGISTRY_URL") ;;
      aggregate-processor|saga-orchestrator) extra+=("CAUSEWAY__PROCESSOR__REGISTRY_URL=$REGISTRY_URL") ;;
      projector-redis) extra+=("CAUSEWAY__REDIS__URL=$REDIS_URL" "CAUSEWAY__PROJECTOR__REGISTRY_URL=$REGISTRY_URL") ;;
      projector-clickhouse) extra+=("CAUSEWAY__CLICKHOUSE__URL=$CLICKHOUSE_URL" "CAUSEWAY__PROJECTOR__REGISTRY_URL=$REGISTRY_URL") ;;
      dlq-reprocessor) extra+=("CAUSEWAY__REDIS__URL=$REDIS_URL" "CAUSEWAY__DLQ__REGISTRY_URL=$REGISTRY_URL"
                               "CAUSEWAY__ACCESS__TOKENS=[{ name = \"demo\", token = \"$(dlq_token)\" }]") ;;
    esac
    env "CAUSEWAY__ADMIN__LISTEN=127.0.0.1:$port" "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP" "${extra[@]}" \
      setsid "$bin/$name" --config "$repo/services/$name/$name.toml" > "$run/$name.log" 2>&1 < /dev/null &
    echo $! > "$run/$name.pid"
  done
  for entry in "${services[@]}"; do
    set -- $entry
    local name=$1 port=$2 deadline=$((SECONDS + 60))
    until ready "$port"; do
      alive "$run/$name.pid" || die "$name exited; its log: $run/$name.log"
      [ $SECONDS -lt $deadline ] || die "$name not ready within 60s; its log: $run/$name.log"
      sleep 0.2
    done
  done
}

stop() {
  [ -d "$run" ] || return 0
  for entry in "${services[@]}"; do
    set -- $entry
    local name=$1 pidfile=$run/$1.pid
    alive "$pidfile" || { rm -f "$pidfile"; continue; }
    local pid; pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then say "$name ignored SIGTERM; killing it"; kill -KILL "$pid"; break; fi
      sleep 0.1
    done
    rm -f "$pidfile"
    say "$name stopped"
  done
}

status() {
  local bad=0
  printf '%-22s %-8s %-16s %s\n' SERVICE PID ADMIN STATE
  for entry in "${services[@]}"; do
    set -- $entry
    local name=$1 port=$2 pid=- state=stopped
    if alive "$run/$name.pid"; then
      pid=$(cat "$run/$name.pid")
      if ready "$port"; then state=ready; else state="not ready"; bad=1; fi
    else
      bad=1
    fi
    printf '%-22s %-8s %-16s %s\n' "$name" "$pid" "127.0.0.1:$port" "$state"
  done
  return $bad
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
