#!/usr/bin/env bash
# Builds the Kafka Streams baseline (bench/streams) into target/bench-streams: its classpath from
# Maven Central (lib/, fetched again when pom.xml changes) and its classes (compiled again when a
# source changes). Prints the classpath to run it with. A no-op when both are up to date.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/target/bench-streams"
mkdir -p "$out"
# One build at a time (the bench and a test may start together).
exec 9>"$out/.lock"
flock 9

for tool in mvn javac java; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench/streams: $tool is missing (make setup installs it)" >&2; exit 1; }
done

if ! cmp -s "$here/pom.xml" "$out/lib/pom.xml" 2>/dev/null; then
  echo "bench/streams: fetching Kafka Streams and Avro from Maven Central" >&2
  rm -rf "$out/lib"
  if ! mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$out/lib" >"$out/maven.log" 2>&1; then
    echo "bench/streams: maven failed; see $out/maven.log" >&2
    tail -20 "$out/maven.log" >&2
    exit 1
  fi
  cp "$here/pom.xml" "$out/lib/pom.xml"
fi

sources=$(find "$here/src/main" -type f | sort)
digest=$(cat $sources "$here/pom.xml" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/classes.sha256" 2>/dev/null)" != "$digest" ]; then
  echo "bench/streams: compiling" >&2
  rm -rf "$out/classes"
  mkdir -p "$out/classes"
  javac -nowarn -Xlint:-options --release 17 -d "$out/classes" -cp "$out/lib/*" \
    $(find "$here/src/main/java" -name '*.java' | sort)
  cp -r "$here/src/main/resources/." "$out/classes/"
  echo "$digest" >"$out/classes.sha256"
fi
echo "$out/classes:$out/lib/*"
