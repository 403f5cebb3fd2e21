#!/usr/bin/env bash
# make test: run every test against the local stack. Starts the stack if it is not running, and stops it
# afterwards in that case only, so a developer's running stack is left as it was.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

started=0
if ! bash "$here/stack.sh" status >/dev/null 2>&1; then
  bash "$here/stack.sh" up || exit 1
  started=1
fi

cargo test --workspace --all-targets --locked --no-fail-fast
status=$?

if [ "$started" -eq 1 ]; then
  bash "$here/stack.sh" down
fi
exit $status
