#!/usr/bin/env bash
# bench/h2-idle.sh: the server's memory per idle WebSocket over TLS, when COUNT WebSockets
# share one HTTP/2 connection (extended CONNECT, RFC 8441) and when each has an HTTP/1.1
# connection of its own.
#
# For each kind, a fresh `switchboard serve --mode echo` with a certificate made here
# (openssl, for localhost) runs on CPU 0, and the h2_idle example (crates/switchboard/examples,
# a raw `h2` client for HTTP/2, switchboard's client for HTTP/1.1) on CPU 1: it opens and
# closes one WebSocket of that kind (so that what the server sets up once is not counted),
# reads the server's VmRSS, opens COUNT WebSockets with one echo each, waits a second, reads
# VmRSS again and prints the difference per WebSocket. The JSON lines go to
# bench/results/h2-idle-TIME/.
#
#   bench/h2-idle.sh [--count N]         # COUNT=100 bench/h2-idle.sh
#
# Not a test: numbers depend on the machine and on the allocator. Needs Linux (taskset,
# /proc) and openssl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root
. e2e/lib.sh

count=${COUNT:-100}
while [ $# -gt 0 ]; do
  case $1 in
    --count) count=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server and client apart)" >&2; exit 1; }

echo "==> building"
cargo build --release -q -p switchboard-cli
cargo build --release -q -p switchboard --example h2_idle
bin=target/release/switchboard
tool=target/release/examples/h2_idle

work=
temp_dir work
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
results=bench/results/h2-idle-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"

for mode in h2 h1; do
  port=$(free_port)
  start "$work/serve-$mode.log" taskset -c 0 "$bin" serve --mode echo \
    --listen "127.0.0.1:$port" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    --http2-max-streams "$((count + 1))"
  server=$started
  wait_port "$port" "$server"
  taskset -c 1 "$tool" "$mode" "127.0.0.1:$port" "$work/cert.pem" "$server" "$count" \
    | tee "$results/$mode.json"
  stop "$server"
done

python3 - "$results" <<'EOF'
import json, sys
runs = {m: json.load(open(f"{sys.argv[1]}/{m}.json")) for m in ("h2", "h1")}
h2, h1 = runs["h2"]["kib_per_websocket"], runs["h1"]["kib_per_websocket"]
n = runs["h2"]["websockets"]
print(f"{n} idle WebSockets over TLS, server RSS per WebSocket: "
      f"HTTP/2 (one connection) {h2:.2f} KiB, HTTP/1.1 ({n} connections) {h1:.2f} KiB, "
      f"ratio {h2 / h1:.2f}; target (HTTP/2 less): {'met' if h2 < h1 else 'not met'}")
EOF
