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
. e2e/lib.sh
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release -q -p switchboard-cli --bin switchboard

temp_dir work
start "$work/serve.log" env NO_COLOR=1 RUST_LOG=info "$target/release/switchboard" serve \
  --mode echo --listen 127.0.0.1:0
addr=$(wait_line "$work/serve.log" 'ws://[0-9.:]*' "$started")
echo "interop: switchboard serve --mode echo on $addr"

cd "$here"
SWITCHBOARD_URL="$addr/" timeout 300 node --test test/ws.test.js test/chromium.test.js
