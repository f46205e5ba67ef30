#!/usr/bin/env bash
# clients/js/test/run.sh: the JavaScript client's tests: tsc on its types, then node --test
# (bad input, the served module and token refresh, the cut test on one node and on 2 nodes
# on Redis). Builds nothing: uses the release binary. Installs what is missing (node, npm,
# redis-server, the npm packages), idempotently.
#
#   run.sh [BINARY]   default: $SWITCHBOARD_BIN, else target/release/switchboard
#   CUTS, CUT_SECONDS  see cut.test.mjs
#   SERVE_FLAGS        flags for every `switchboard serve` of the tests (e.g. --event-loop)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
root=$(cd ../../.. && pwd)
export SWITCHBOARD_BIN=${1:-${SWITCHBOARD_BIN:-$root/target/release/switchboard}}
if ! [ -x "$SWITCHBOARD_BIN" ]; then
  echo "no binary at $SWITCHBOARD_BIN: cargo build --release -p switchboard-cli" >&2
  exit 1
fi

pkgs=()
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
command -v redis-server >/dev/null || pkgs+=(redis-server)
if [ ${#pkgs[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
# Reinstall only when the lock file changed since the last install (a copy marks it).
if ! cmp -s package-lock.json node_modules/.installed-from-lock 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-from-lock
fi

echo "tsc --noEmit: switchboard.d.ts and types.ts"
node_modules/.bin/tsc -p .

# Node 22 has a global WebSocket; Node 20 and 21 have it behind a flag.
flags=()
node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' || flags+=(--experimental-websocket)
exec node "${flags[@]}" --test --test-timeout=240000 --test-concurrency=1 \
  bad-input.test.mjs hub.test.mjs cut.test.mjs
