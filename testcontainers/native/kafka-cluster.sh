#!/usr/bin/env bash
# A three-broker Apache Kafka cluster (KRaft, each node broker and controller, a static quorum of three)
# on 127.0.0.1, for tests that lose a broker: replication 3, min.insync.replicas 2. It uses the Kafka jars
# that `stack.sh install` fetched into $CAUSEWAY_STACK_DIR/kafka/libs.
#
#   kafka-cluster.sh up DIR P1 P2 P3 C1 C2 C3   start (broker ports P*, controller ports C*) and wait until
#                                                every broker answers; prints the bootstrap servers
#   kafka-cluster.sh kill DIR N                  SIGKILL node N (1..3)
#   kafka-cluster.sh down DIR                    stop every node and delete DIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
stack=${CAUSEWAY_STACK_DIR:-$repo/.stack}
libs=$stack/kafka/libs

say() { printf 'kafka-cluster: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

java_for() { # node dir: sets the array `java`
  java=(java -Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$1/log4j2.properties" -cp "$libs/*")
}

up() {
  local dir=$1; shift
  local ports=("$1" "$2" "$3") controllers=("$4" "$5" "$6")
  [ -d "$libs" ] || die "no Kafka jars in $libs: run stack.sh install"
  mkdir -p "$dir"
  local voters="1@127.0.0.1:${controllers[0]},2@127.0.0.1:${controllers[1]},3@127.0.0.1:${controllers[2]}"
  local id java
  java_for "$dir"
  id=$("${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
  for n in 1 2 3; do
    local k=$dir/node$n p=${ports[$((n - 1))]} c=${controllers[$((n - 1))]}
    mkdir -p "$k/data"
    cat > "$k/server.properties" <<EOP
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c
advertised.listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$k/data
auto.create.topics.enable=false
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
# A lost broker is noticed in 3 s (default 9 s), so leadership moves quickly in the test.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
replica.lag.time.max.ms=5000
EOP
    cat > "$k/log4j2.properties" <<'EOP'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
EOP
    java_for "$k"
    "${java[@]}" kafka.tools.StorageTool format -t "$id" -c "$k/server.properties" \
      > "$k/format.log" 2>&1 || die "formatting node $n failed: $k/format.log"
    setsid "${java[@]}" kafka.Kafka "$k/server.properties" > "$k/kafka.log" 2>&1 < /dev/null &
    echo $! > "$k/kafka.pid"
  done
  local deadline=$((SECONDS + 120))
  for n in 1 2 3; do
    local p=${ports[$((n - 1))]}
    until [ "$(kcat -b "127.0.0.1:$p" -L -m 3 2>/dev/null | grep -c 'broker ')" -ge 3 ]; do
      alive "$dir/node$n/kafka.pid" || die "node $n exited; its log: $dir/node$n/kafka.log"
      [ $SECONDS -lt $deadline ] || die "the cluster did not form within 120 s; logs under $dir"
      sleep 0.5
    done
  done
  echo "127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
}

kill_node() { # dir n
  local pidfile=$1/node$2/kafka.pid
  alive "$pidfile" || die "node $2 is not running"
  kill -KILL "$(cat "$pidfile")"
}

down() {
  local dir=$1
  for n in 1 2 3; do
    local pidfile=$dir/node$n/kafka.pid
    if alive "$pidfile"; then kill -KILL "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  rm -rf "$dir"
}

case ${1:-} in
  up) shift; up "$@" ;;
  kill) kill_node "$2" "$3" ;;
  down) down "$2" ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
