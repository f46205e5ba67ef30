#!/usr/bin/env bash
# e2e/pusher/run.sh: pusher-js (Node) and the `pusher` server library against
# `switchboard serve --pusher-app` (pusher.test.mjs) and pusher-js and Laravel Echo in Debian's
# Chromium (browser.test.mjs); then the Python `pusher` server library (server_lib.py). The
# Node and Python library tests run against one node and then against three nodes sharing a
# redis-server (`serve --broker redis://...`). Builds nothing: uses the release binary.
# Installs what is missing (node, npm, chromium, redis-server, the npm packages, the Python
# library), idempotently.
#
#   run.sh [BINARY]   default: $SWITCHBOARD_BIN, else target/release/switchboard
#   CHROMIUM          the browser (default /usr/bin/chromium)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
root=$(cd ../.. && pwd)
export SWITCHBOARD_BIN=${1:-${SWITCHBOARD_BIN:-$root/target/release/switchboard}}
if ! [ -x "$SWITCHBOARD_BIN" ]; then
  echo "no binary at $SWITCHBOARD_BIN: cargo build --release -p switchboard-cli" >&2
  exit 1
fi

pkgs=()
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || pkgs+=(chromium)
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
node --test --test-timeout=120000 pusher.test.mjs browser.test.mjs
PUSHER_CLUSTER=1 node --test --test-timeout=120000 pusher.test.mjs

# The Python library, pinned; pip as root and, on a system Python, past its externally
# managed marker.
PY_PUSHER=pusher==3.3.4
if ! python3 -c 'import pusher' 2>/dev/null; then
  pip=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
  "${pip[@]}" "$PY_PUSHER" 2>/dev/null || "${pip[@]}" --break-system-packages "$PY_PUSHER"
fi
python3 server_lib.py "$SWITCHBOARD_BIN"
exec python3 server_lib.py "$SWITCHBOARD_BIN" --cluster
