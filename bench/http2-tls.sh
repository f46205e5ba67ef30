#!/usr/bin/env bash
# bench/http2-tls.sh: WebSockets over HTTP/2 (RFC 8441) against HTTP/1.1, both over TLS, on
# rows (a)-(c) of bench/run.sh. One `switchboard serve --mode echo --tls-self-signed` on CPU 0,
# `switchboard bench` on CPU 1, interleaved per row: HTTP/1.1 (100 TLS connections), then
# HTTP/2 with the 100 WebSockets on 1 connection and on 10. Prints msg/s and the server's
# CPU per message (user + system from /proc over the measured window) and writes the raw JSON
# to bench/results/http2-<time>/.
#
#   bench/http2-tls.sh [--duration S] [--warmup S] [--rounds N]
#
# Server and load generator run at nice NICE (default -10 as root, else 0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root
. e2e/lib.sh

duration=10 warmup=2 rounds=1
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -eq 0 ]; then nice=${NICE:--10}; else nice=${NICE:-0}; fi
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server and load generator apart)" >&2; exit 1; }

cargo build --release -q -p switchboard-cli
bin=target/release/switchboard
out=bench/results/http2-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

port=$(free_port)
start "$out/server.out" nice -n "$nice" taskset -c 0 "$bin" serve --mode echo \
  --listen "127.0.0.1:$port" --tls-self-signed
server_pid=$started
wait_port "$port" "$server_pid"

rows=("a --size 16 -m 1" "b --size 16 -m 16" "c --size 1024 --binary -m 16")
variants=("http1" "http2x1 --http2 --streams-per-connection 100" "http2x10 --http2 --streams-per-connection 10")
printf '%-4s %-9s %12s %14s %8s\n' row http msg/s 'µs CPU/msg' errors
for round in $(seq "$rounds"); do
  for row in "${rows[@]}"; do
    read -r id row_args <<<"$row"
    for variant in "${variants[@]}"; do
      read -r name variant_args <<<"$variant"
      json=$out/$id-$name-$round.json
      # shellcheck disable=SC2086  # the rows' and variants' arguments are words
      nice -n "$nice" taskset -c 1 "$bin" bench "wss://127.0.0.1:$port/" --insecure -c 100 \
        $row_args $variant_args --duration "${duration}s" --warmup "${warmup}s" \
        --server-pid "$server_pid" --json >"$json"
      python3 - "$json" "$id" "$name" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
cpu = (r.get("cpu") or {}).get("server_us_per_msg")
print(f"{sys.argv[2]:<4} {sys.argv[3]:<9} {r['msgs_per_sec']:>12.0f} {cpu or 0:>14.2f} {r['errors']:>8}")
EOF
    done
  done
done
stop "$server_pid"
echo "raw results in $out"
