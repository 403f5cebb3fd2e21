#!/usr/bin/env bash
# The native test stack: Apache Kafka (KRaft, single node), Redis, ClickHouse and the suite's own schema
# registry as plain processes on 127.0.0.1, with all their data, logs and PIDs under one git-ignored folder ($CAUSEWAY_STACK_DIR,
# default <repo>/.stack). `make up`/`make down` and the integration tests (crate causeway-testcontainers)
# all go through this one script.
#
#   stack.sh install   install what is missing (apt packages, Kafka jars from Maven Central); idempotent
#   stack.sh up        install, then start whatever is not running and wait until each really answers
#   stack.sh down      stop exactly the processes this stack started (by their recorded PIDs)
#   stack.sh status    say what runs where; exit 1 if any component is down
#   stack.sh env       print the endpoints of the running stack (KEY=value lines)
#   stack.sh wipe      down, then delete the stack folder (data, logs, jars)
#
# Ports (environment, read by `up`; the running stack's ports are recorded in $CAUSEWAY_STACK_DIR/stack.env):
#   CAUSEWAY_STACK_KAFKA_PORT (19092)  CAUSEWAY_STACK_KAFKA_CONTROLLER_PORT (19093)
#   CAUSEWAY_STACK_REDIS_PORT (16379)  CAUSEWAY_STACK_CLICKHOUSE_HTTP_PORT (18123)
#   CAUSEWAY_STACK_CLICKHOUSE_TCP_PORT (19000)  CAUSEWAY_STACK_REGISTRY_PORT (18081)
#   CAUSEWAY_STACK_REGISTRY_ADMIN_PORT (19081)
# Kafka's layout: CAUSEWAY_STACK_KAFKA_LAYOUT=combined (one node, broker and controller; the default) or
# split (a controller process and a broker process; kafka/kafka.pid is the broker's).
# The registry is this repository's `schema-registry` binary, from $CAUSEWAY_BIN_DIR (target/debug): build
# it first (make build; cargo test builds it too).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${CAUSEWAY_STACK_DIR:-$repo/.stack}
bin=${CAUSEWAY_BIN_DIR:-$repo/target/debug}
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka-pom.xml")

say() { printf 'stack: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (install it by hand, or run as root)"; fi
}

# --- install ------------------------------------------------------------------------------------

install() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  [ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
  command -v clickhouse-client >/dev/null 2>&1 || missing+=(clickhouse-client)
  command -v kcat >/dev/null 2>&1 || missing+=(kcat)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
  command -v flock >/dev/null 2>&1 || missing+=(util-linux)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt)"
    apt_install "${missing[@]}"
  fi

  install_python

  local libs=$dir/kafka/libs
  # Fetched again when kafka-pom.xml changes (a copy of the one used is kept beside the jars).
  if [ ! -f "$libs/kafka_2.13-$kafka_version.jar" ] || ! cmp -s "$here/kafka-pom.xml" "$libs/kafka-pom.xml"; then
    say "fetching Apache Kafka $kafka_version jars (Maven Central)"
    rm -rf "$libs"
    mkdir -p "$libs"
    mvn -q -B -Dstyle.color=never -f "$here/kafka-pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" >"$dir/maven.log" 2>&1 \
      || die "could not fetch the Kafka jars with Maven; its output: $dir/maven.log"
    cp "$here/kafka-pom.xml" "$libs/kafka-pom.xml"
  fi
}

# Outside clients the tests use (Confluent's Python client, Avro's reference checker), in a venv of the
# stack's own, reinstalled when the pinned requirements change.
install_python() {
  local venv=$dir/venv req=$here/../python/requirements.txt
  if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/requirements.txt"; then return 0; fi
  command -v python3 >/dev/null 2>&1 || { say "installing python3 (apt)"; apt_install python3; }
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    say "installing python3-venv (apt)"; apt_install python3-venv
  fi
  say "installing the Python test clients into $venv (PyPI)"
  rm -rf "$venv"
  mkdir -p "$dir"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" > "$dir/pip.log" 2>&1 \
    || die "pip could not install $req; its output: $dir/pip.log"
  cp "$req" "$venv/requirements.txt"
}

apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- helpers ------------------------------------------------------------------------------------

# A PID file names a live process of ours: the PID runs, and (after a reboot or kill -9 the PID may have
# been reused) its command line is the component's.
alive() { # pidfile
  [ -f "$1" ] || return 1
  local pid; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  local pattern
  case $(basename "$1") in
    kafka.pid|controller.pid) pattern=kafka.Kafka ;;
    redis.pid) pattern=redis-server ;;
    clickhouse.pid) pattern=clickhouse-server ;;
    registry.pid) pattern=schema-registry ;;
    *) return 0 ;;
  esac
  # No pipe here: with pipefail, `tr | grep -q` fails whenever grep stops reading first (SIGPIPE).
  grep -qa -- "$pattern" "/proc/$pid/cmdline" 2>/dev/null
}

wait_for() { # name seconds command...
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      die "$name did not answer within ${secs}s; its log: $(log_of "$name")"
    fi
    sleep 0.2
  done
}

log_of() {
  case $1 in
    kafka) echo "$dir/kafka/kafka.log" ;;
    "kafka controller") echo "$dir/kafka/controller.log" ;;
    redis) echo "$dir/redis/redis.log" ;;
    clickhouse) echo "$dir/clickhouse/clickhouse.err.log" ;;
    registry) echo "$dir/registry/registry.log" ;;
  esac
}

stop_pid() { # name pidfile
  local name=$1 pidfile=$2
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      say "$name (pid $pid) ignored SIGTERM for 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
  say "$name stopped"
}

# Ports come from the recorded env of a running stack, so `down`, `status` and a second `up` act on the
# stack that runs, whatever the caller's environment says now.
load_ports() {
  # The recorded ports of a running stack win over the caller's environment.
  if [ -f "$dir/ports" ] && any_alive; then
    # shellcheck disable=SC1091
    . "$dir/ports"
  fi
  kafka_port=${CAUSEWAY_STACK_KAFKA_PORT:-19092}
  kafka_layout=${CAUSEWAY_STACK_KAFKA_LAYOUT:-combined}
  case $kafka_layout in combined|split) ;; *) die "CAUSEWAY_STACK_KAFKA_LAYOUT is combined or split, not $kafka_layout" ;; esac
  controller_port=${CAUSEWAY_STACK_KAFKA_CONTROLLER_PORT:-19093}
  redis_port=${CAUSEWAY_STACK_REDIS_PORT:-16379}
  ch_http_port=${CAUSEWAY_STACK_CLICKHOUSE_HTTP_PORT:-18123}
  ch_tcp_port=${CAUSEWAY_STACK_CLICKHOUSE_TCP_PORT:-19000}
  registry_port=${CAUSEWAY_STACK_REGISTRY_PORT:-18081}
  registry_admin_port=${CAUSEWAY_STACK_REGISTRY_ADMIN_PORT:-19081}
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Refuse to start next to something else on our ports: it would look like our stack but is not.
check_free() { # component port variable
  if port_taken "$2"; then
    die "$1 cannot start: 127.0.0.1:$2 is already in use by another process (a stack from another folder?). Stop it, or choose another port with $3."
  fi
}

any_alive() {
  alive "$dir/kafka/kafka.pid" || alive "$dir/kafka/controller.pid" || alive "$dir/redis/redis.pid" || alive "$dir/clickhouse/clickhouse.pid" \
    || alive "$dir/registry/registry.pid"
}

kafka_answers() { kcat -b "127.0.0.1:$kafka_port" -L -m 3 >/dev/null 2>&1; }
redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ]; }
clickhouse_answers() { [ "$(curl -fsS "http://127.0.0.1:$ch_http_port/ping" 2>/dev/null)" = "Ok." ]; }
registry_answers() { curl -fsS "http://127.0.0.1:$registry_admin_port/readyz" >/dev/null 2>&1; }

# --- Kafka --------------------------------------------------------------------------------------

# The broker's settings, in either layout.
broker_settings() {
  cat <<EOF
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/kafka/data
# Topics are provisioned declaratively (causeway topics apply); a typo must not create one.
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# A single local node: groups join at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
EOF
}

# Start one Kafka process: `combined` (broker and controller, node 1: the default layout), or, in the
# `split` layout (CAUSEWAY_STACK_KAFKA_LAYOUT=split, as production runs KRaft), `controller` (node 1)
# and `broker` (node 2), each with its own data and PID file, so that a test can kill the broker alone.
start_kafka_node() { # combined|controller|broker
  local k=$dir/kafka role=$1 props pidfile log
  mkdir -p "$k/data"
  case $role in
    combined) props=$k/server.properties pidfile=$k/kafka.pid log=$k/kafka.log
      {
        echo "process.roles=broker,controller"
        echo "node.id=1"
        echo "controller.quorum.bootstrap.servers=127.0.0.1:$controller_port"
        echo "listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port"
        echo "advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port"
        echo "controller.listener.names=CONTROLLER"
        echo "num.partitions=3"
        broker_settings
      } > "$props" ;;
    controller) props=$k/controller.properties pidfile=$k/controller.pid log=$k/controller.log
      mkdir -p "$k/controller-data"
      {
        echo "process.roles=controller"
        echo "node.id=1"
        echo "controller.quorum.bootstrap.servers=127.0.0.1:$controller_port"
        echo "listeners=CONTROLLER://127.0.0.1:$controller_port"
        echo "advertised.listeners=CONTROLLER://127.0.0.1:$controller_port"
        echo "controller.listener.names=CONTROLLER"
        echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT"
        echo "log.dirs=$k/controller-data"
        echo "num.partitions=3"
      } > "$props" ;;
    broker) props=$k/server.properties pidfile=$k/kafka.pid log=$k/kafka.log
      {
        echo "process.roles=broker"
        echo "node.id=2"
        echo "controller.quorum.bootstrap.servers=127.0.0.1:$controller_port"
        echo "listeners=PLAINTEXT://127.0.0.1:$kafka_port"
        echo "advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port"
        echo "controller.listener.names=CONTROLLER"
        broker_settings
      } > "$props" ;;
  esac
  cat > "$k/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
EOF
  # A controller-only node keeps the metadata log only: a small heap does.
  local heap=1g
  [ "$role" = controller ] && heap=256m
  local java=(java -Xms256m "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$k/log4j2.properties" -cp "$k/libs/*")
  local data; data=$(sed -n 's/^log.dirs=//p' "$props")
  # Data formatted for the other layout (node ids and metadata differ) cannot be reused.
  if [ -f "$k/layout" ] && [ "$(cat "$k/layout")" != "$kafka_layout" ]; then
    die "$k was formatted for the $(cat "$k/layout") layout, not $kafka_layout: wipe it (stack.sh wipe) or use another CAUSEWAY_STACK_DIR"
  fi
  if [ ! -f "$data/meta.properties" ]; then
    if [ ! -s "$k/cluster.id" ]; then
      "${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 > "$k/cluster.id"
    fi
    local id; id=$(cat "$k/cluster.id")
    local initial=(--standalone)
    [ "$role" = broker ] && initial=()
    "${java[@]}" kafka.tools.StorageTool format "${initial[@]}" -t "$id" -c "$props" \
      > "$k/format-$role.log" 2>&1 || die "formatting Kafka storage ($role) failed: $k/format-$role.log"
    echo "$kafka_layout" > "$k/layout"
  fi
  setsid "${java[@]}" kafka.Kafka "$props" > "$log" 2>&1 < /dev/null 9>&- &
  echo $! > "$pidfile"
}

# Start what of Kafka is not running.
start_kafka() {
  if [ "$kafka_layout" = split ]; then
    alive "$dir/kafka/controller.pid" || start_kafka_node controller
    alive "$dir/kafka/kafka.pid" || start_kafka_node broker
  else
    start_kafka_node combined
  fi
}

# Whether every Kafka process of the layout runs.
kafka_alive() {
  alive "$dir/kafka/kafka.pid" && { [ "$kafka_layout" = combined ] || alive "$dir/kafka/controller.pid"; }
}

# --- Redis --------------------------------------------------------------------------------------

start_redis() {
  local r=$dir/redis
  mkdir -p "$r"
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --daemonize yes \
    --dir "$r" --pidfile "$r/redis.pid" --logfile "$r/redis.log" 9>&- \
    || die "redis-server failed to start: $r/redis.log"
  local deadline=$((SECONDS + 10))
  until [ -s "$r/redis.pid" ]; do
    [ $SECONDS -ge $deadline ] && die "redis-server wrote no pidfile: $r/redis.log"
    sleep 0.1
  done
}

# --- ClickHouse ---------------------------------------------------------------------------------

start_clickhouse() {
  local c=$dir/clickhouse
  mkdir -p "$c/data" "$c/tmp" "$c/user_files" "$c/format_schemas"
  cat > "$c/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$c/clickhouse.log</log>
        <errorlog>$c/clickhouse.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$ch_http_port</http_port>
    <tcp_port>$ch_tcp_port</tcp_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>10</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$c/data/</path>
    <tmp_path>$c/tmp/</tmp_path>
    <user_files_path>$c/user_files/</user_files_path>
    <format_schema_path>$c/format_schemas/</format_schema_path>
    <users_config>$c/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
EOF
  cat > "$c/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval><duration>3600</duration><queries>0</queries><errors>0</errors>
                <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval>
        </default>
    </quotas>
</yandex>
EOF
  local run=(/usr/sbin/clickhouse-server --config-file="$c/config.xml")
  if [ "$(id -u)" -eq 0 ] && id clickhouse >/dev/null 2>&1; then
    # The server will not run as root; it runs as the package's own user over its own folder.
    chown -R clickhouse: "$c"
    run=(setpriv --reuid=clickhouse --regid=clickhouse --init-groups "${run[@]}")
  fi
  setsid "${run[@]}" > "$c/stdout.log" 2>&1 < /dev/null 9>&- &
  echo $! > "$c/clickhouse.pid"
}

# --- Schema registry (ours) ---------------------------------------------------------------------

start_registry() {
  local r=$dir/registry
  mkdir -p "$r"
  [ -x "$bin/schema-registry" ] || die "the schema registry is not built ($bin/schema-registry): run make build first"
  env "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$kafka_port" \
    "CAUSEWAY__REGISTRY__LISTEN=127.0.0.1:$registry_port" \
    "CAUSEWAY__ADMIN__LISTEN=127.0.0.1:$registry_admin_port" \
    setsid "$bin/schema-registry" --config "$repo/services/schema-registry/schema-registry.toml" \
    > "$r/registry.log" 2>&1 < /dev/null 9>&- &
  echo $! > "$r/registry.pid"
}

# Every process started here closes fd 9 (the stack lock), or it would hold the lock for its lifetime.

# --- commands -----------------------------------------------------------------------------------

write_env() {
  {
    echo "CAUSEWAY_STACK_KAFKA_PORT=$kafka_port"
    echo "CAUSEWAY_STACK_KAFKA_CONTROLLER_PORT=$controller_port"
    echo "CAUSEWAY_STACK_KAFKA_LAYOUT=$kafka_layout"
    echo "CAUSEWAY_STACK_REDIS_PORT=$redis_port"
    echo "CAUSEWAY_STACK_CLICKHOUSE_HTTP_PORT=$ch_http_port"
    echo "CAUSEWAY_STACK_CLICKHOUSE_TCP_PORT=$ch_tcp_port"
    echo "CAUSEWAY_STACK_REGISTRY_PORT=$registry_port"
    echo "CAUSEWAY_STACK_REGISTRY_ADMIN_PORT=$registry_admin_port"
  } > "$dir/ports"
  {
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$kafka_port"
    echo "REDIS_URL=redis://127.0.0.1:$redis_port"
    echo "CLICKHOUSE_URL=http://127.0.0.1:$ch_http_port"
    echo "REGISTRY_URL=http://127.0.0.1:$registry_port"
  } > "$dir/stack.env"
}

up() {
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9
  install
  load_ports
  local started=()
  if ! alive "$dir/kafka/kafka.pid"; then
    check_free kafka "$kafka_port" CAUSEWAY_STACK_KAFKA_PORT
  fi
  if { [ "$kafka_layout" = combined ] && ! alive "$dir/kafka/kafka.pid"; } \
    || { [ "$kafka_layout" = split ] && ! alive "$dir/kafka/controller.pid"; }; then
    check_free kafka "$controller_port" CAUSEWAY_STACK_KAFKA_CONTROLLER_PORT
  fi
  if ! alive "$dir/redis/redis.pid"; then check_free redis "$redis_port" CAUSEWAY_STACK_REDIS_PORT; fi
  if ! alive "$dir/clickhouse/clickhouse.pid"; then
    check_free clickhouse "$ch_http_port" CAUSEWAY_STACK_CLICKHOUSE_HTTP_PORT
    check_free clickhouse "$ch_tcp_port" CAUSEWAY_STACK_CLICKHOUSE_TCP_PORT
  fi
  if ! alive "$dir/registry/registry.pid"; then
    check_free registry "$registry_port" CAUSEWAY_STACK_REGISTRY_PORT
    check_free registry "$registry_admin_port" CAUSEWAY_STACK_REGISTRY_ADMIN_PORT
  fi
  if kafka_alive; then :; else start_kafka; started+=(kafka); fi
  if alive "$dir/redis/redis.pid"; then :; else start_redis; started+=(redis); fi
  if alive "$dir/clickhouse/clickhouse.pid"; then :; else start_clickhouse; started+=(clickhouse); fi
  write_env
  wait_for kafka 90 kafka_answers
  # The registry keeps its state in Kafka: it starts once Kafka answers. A registry binary rebuilt since
  # the running one started replaces it, so tests never run against stale code.
  if alive "$dir/registry/registry.pid" && [ "$bin/schema-registry" -nt "$dir/registry/registry.pid" ]; then
    say "the schema registry was rebuilt; restarting it"
    stop_pid registry "$dir/registry/registry.pid"
  fi
  if alive "$dir/registry/registry.pid"; then :; else start_registry; started+=(registry); fi
  wait_for redis 20 redis_answers
  wait_for clickhouse 30 clickhouse_answers
  wait_for registry 60 registry_answers
  if [ ${#started[@]} -eq 0 ]; then
    say "already running (kafka 127.0.0.1:$kafka_port, redis :$redis_port, clickhouse :$ch_http_port, registry :$registry_port)"
  else
    say "started ${started[*]}; kafka 127.0.0.1:$kafka_port, redis :$redis_port, clickhouse http :$ch_http_port, registry http :$registry_port"
  fi
}

down() {
  [ -d "$dir" ] || { say "nothing to stop"; return 0; }
  exec 9>"$dir/.lock"
  flock 9
  stop_pid registry "$dir/registry/registry.pid"
  stop_pid clickhouse "$dir/clickhouse/clickhouse.pid"
  stop_pid redis "$dir/redis/redis.pid"
  stop_pid kafka "$dir/kafka/kafka.pid"
  stop_pid "kafka controller" "$dir/kafka/controller.pid"
}

status() {
  load_ports
  local bad=0
  for c in kafka redis clickhouse registry; do
    local pidfile=$dir/$c/$c.pid
    if alive "$pidfile" && "${c}_answers"; then
      say "$c up (pid $(cat "$pidfile"))"
    elif alive "$pidfile"; then
      say "$c running (pid $(cat "$pidfile")) but not answering; log: $(log_of "$c")"; bad=1
    else
      say "$c down"; bad=1
    fi
  done
  if [ "$kafka_layout" = split ]; then
    if alive "$dir/kafka/controller.pid"; then
      say "kafka controller up (pid $(cat "$dir/kafka/controller.pid"))"
    else
      say "kafka controller down; log: $(log_of "kafka controller")"; bad=1
    fi
  fi
  return $bad
}

case ${1:-} in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  env) load_ports; any_alive || die "the stack is not running (make up)"; cat "$dir/stack.env" ;;
  wipe) down; rm -rf "$dir"; say "removed $dir" ;;
  *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
