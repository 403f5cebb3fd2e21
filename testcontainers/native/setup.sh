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
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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

# Helm for the chart's tests (helm lint, helm template), built from the Go module proxy into
# .stack/tools/bin (about a minute and a half, once).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
helm_version=v3.22.0
if [ ! -x "$repo/.stack/tools/bin/helm" ] || ! "$repo/.stack/tools/bin/helm" version 2>/dev/null | grep -q "${helm_version%.0}"; then
  command -v go >/dev/null 2>&1 || { say "Go is not installed (needed to build Helm for the chart's tests): install Go 1.26 or later"; exit 1; }
  say "building Helm $helm_version (go install, into .stack/tools/bin)"
  mkdir -p "$repo/.stack/tools/bin"
  GOBIN="$repo/.stack/tools/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$helm_version" \
    > "$repo/.stack/tools/helm-build.log" 2>&1 \
    || { say "building Helm failed; see .stack/tools/helm-build.log"; exit 1; }
fi
