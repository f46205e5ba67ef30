#!/usr/bin/env bash
# e2e/scale/connections.sh [N]: N concurrent connections (default 10,000) held open on one
# `switchboard serve --mode echo`, each answering a message first (`switchboard bench --mode
# idle`); checks every one was held with no error and reports the server's RSS per connection.
# Raises the open-file limit as far as the hard limit allows (each side needs N descriptors).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."  # repo root
. e2e/lib.sh
n=${1:-10000}
bin=target/release/switchboard
ulimit -Hn $((n + 1000)) 2>/dev/null || true  # root may raise it; a container may not
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((n + 100)) ]; then
  echo "note: the open-file limit $(ulimit -n) allows fewer than $n connections" >&2
  n=$(($(ulimit -n) - 100))
fi
temp_dir work

start "$work/serve.log" "$bin" serve --mode echo --listen 127.0.0.1:0 --max-connections $((n + 100))
server=$started
addr=$(wait_line "$work/serve.log" '127\.0\.0\.1:[0-9]*' "$server")

"$bin" bench "ws://$addr/" --mode idle -c "$n" -d 2s --warmup 0s --server-pid "$server" --json \
  >"$work/result.json" 2>"$work/bench.log" || { cat "$work/bench.log" >&2; exit 1; }
python3 - "$work/result.json" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
m = r["memory"]
ok = r["messages"] == n and r["errors"] == 0
print(f"{r['messages']} connections held, each answered one message, {r['errors']} errors")
print(f"server RSS {m['rss_before_kib']} KiB before, {m['rss_after_kib']} KiB with them: "
      f"{m['per_connection_kib']:.2f} KiB per connection")
print(f"{1 if ok else 0} passed, {0 if ok else 1} failed")
sys.exit(0 if ok else 1)
PY
