#!/usr/bin/env bash
# Installs the system packages the build needs (Debian), when missing. The stack's own packages are
# installed by stack.sh install.
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root to run: $*"; exit 1; fi
}

command -v cargo >/dev/null 2>&1 || { say "Rust (cargo) is not installed: install it with rustup first"; exit 1; }

missing=()
# rdkafka builds the bundled librdkafka with make and a C compiler, and links OpenSSL (ssl feature).
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v curl >/dev/null 2>&1 || missing+=(curl)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
# The browser tests of the web UIs: Debian's Chromium, driven by playwright-core (npm, below).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Prometheus and promtool (Debian's) for the dashboards' and alert rules' tests.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the packaged Prometheus as a system service; the tests run their own.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    say "installing the Rust component $component"
    rustup component add "$component"
  fi
done

# playwright-core for the browser tests, pinned by testcontainers/browser/package-lock.json (it never
# downloads a browser of its own: the tests use Debian's).
browser=$(cd "$(dirname "${BASH_SOURCE[0]}")/../browser" && pwd)
if [ ! -d "$browser/node_modules/playwright-core" ]; then
  say "installing playwright-core (npm ci in testcontainers/browser)"
  (cd "$browser" && npm ci --no-audit --no-fund --silent)
fi

# Tools of the deployment tests, built from the Go module proxy into .stack/tools/bin, once each: Helm
# (helm lint/template, about a minute and a half), kustomize (the k8s/ overlays) and Jaeger (receives
# the services' spans in the tracing test, a few minutes).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tools=$repo/.stack/tools
go_tool() { # name module version
  local name=$1 module=$2 version=$3
  if [ -x "$tools/bin/$name" ] && [ "$(cat "$tools/$name.version" 2>/dev/null)" = "$module@$version" ]; then
    return 0
  fi
  command -v go >/dev/null 2>&1 || { say "Go is not installed (needed to build $name for the deployment tests): install Go 1.26 or later"; exit 1; }
  say "building $name $version (go install, into .stack/tools/bin)"
  mkdir -p "$tools/bin"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "$module@$version" > "$tools/$name-build.log" 2>&1 \
    || { say "building $name failed; see .stack/tools/$name-build.log"; exit 1; }
  echo "$module@$version" > "$tools/$name.version"
}
go_tool helm helm.sh/helm/v3/cmd/helm v3.22.0
go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 v5.8.1
# Jaeger's go.mod has replace directives, which `go install pkg@version` refuses: it is built as a tool
# of a module of its own (.stack/tools/jaeger-module), whose dependencies `go get` resolves from Jaeger's.
jaeger_version=v1.76.0
if [ ! -x "$tools/bin/jaeger" ] || [ "$(cat "$tools/jaeger.version" 2>/dev/null)" != "$jaeger_version" ]; then
  command -v go >/dev/null 2>&1 || { say "Go is not installed (needed to build Jaeger for the tracing test): install Go 1.26 or later"; exit 1; }
  say "building Jaeger $jaeger_version (go get -tool, go build; a few minutes, once)"
  module=$tools/jaeger-module
  rm -rf "$module" && mkdir -p "$module" "$tools/bin"
  ( cd "$module" && go mod init causeway-tools-jaeger \
      && go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$jaeger_version" \
      && go build -o "$tools/bin/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger ) > "$tools/jaeger-build.log" 2>&1 \
    || { say "building Jaeger failed; see .stack/tools/jaeger-build.log"; exit 1; }
  echo "$jaeger_version" > "$tools/jaeger.version"
fi

# The CustomResourceDefinitions the chart and k8s/ use, for offline validation: prometheus-operator's
# (ServiceMonitor, PrometheusRule) and KEDA's (ScaledObject) from their Go modules; Strimzi's KafkaTopic
# through its model package from npm (testcontainers/crds).
crd_module() { # module version path-in-module file...
  local module=$1 version=$2 path=$3; shift 3
  local want=$tools/crds/.$(echo "$module@$version" | tr '/@' '__')
  [ -f "$want" ] && return 0
  say "fetching the CRDs of $module $version (Go module proxy)"
  local dir
  dir=$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { say "go mod download $module@$version failed"; exit 1; }
  mkdir -p "$tools/crds"
  for file in "$@"; do cp "$dir/$path/$file" "$tools/crds/$file"; done
  touch "$want"
}
crd_module github.com/prometheus-operator/prometheus-operator v0.85.0 example/prometheus-operator-crd \
  monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml
crd_module github.com/kedacore/keda/v2 v2.18.0 config/crd/bases \
  keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml
crds=$(cd "$(dirname "${BASH_SOURCE[0]}")/../crds" && pwd)
if [ ! -d "$crds/node_modules/@kubernetes-models/strimzi-kafka-operator" ]; then
  say "installing Strimzi's resource models (npm ci in testcontainers/crds)"
  (cd "$crds" && npm ci --no-audit --no-fund --silent)
fi
