#!/usr/bin/env bash
# e2e/interop/run.sh: permessage-deflate interop with the clients people use.
#
# Starts `switchboard serve --mode echo` on a free loopback port and runs the tests in
# e2e/interop/test/ against it: Node's ws client (npm) and Chromium (Debian's package,
# driven by npm's playwright-core). Each checks the negotiated Sec-WebSocket-Extensions
# and the echoes of text and binary messages, small and 1 MiB.
#
# Needs node and npm, the packages of package-lock.json (npm ci) and /usr/bin/chromium;
# scripts/test.sh installs them. CHROMIUM overrides the browser's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/../.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release -q -p switchboard-cli --bin switchboard

log=$(mktemp)
NO_COLOR=1 RUST_LOG=info "$target/release/switchboard" serve --mode echo \
  --listen 127.0.0.1:0 >"$log" 2>&1 &
server=$!
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

addr=
for _ in $(seq 100); do
  addr=$(grep -o 'ws://[0-9.:]*' "$log" | head -1 || true)
  [ -n "$addr" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "interop: the server did not start" >&2; cat "$log" >&2; exit 1; }
echo "interop: switchboard serve --mode echo on $addr"

cd "$here"
SWITCHBOARD_URL="$addr/" timeout 300 node --test test/ws.test.js test/chromium.test.js
