#!/usr/bin/env bash
# bench/hub-idle.sh: what an idle hub connection subscribed to one channel costs the server.
#
# Two measures, each with COUNT connections (default 10,000) of `switchboard bench --mode hub`
# (one channel, every connection subscribed, one publication a second) on CPU 1:
#
#   rss   a fresh `switchboard serve` (hub mode, in-process broker) on CPU 0: its VmRSS when
#         every connection is open and subscribed, less its VmRSS after one connection came and
#         went (what the server sets up once), divided by COUNT;
#   heap  the hub_memory example (crates/switchboard-hub/examples), the hub on a server that
#         counts its allocations: live heap bytes and blocks per connection.
#
# Prints one line per measure; the raw output goes to bench/results/hub-idle-TIME/.
#
#   bench/hub-idle.sh [--count N] [--hold S] [--event-loop]   # COUNT=5000 HOLD=4 bench/hub-idle.sh
#
# --event-loop serves the hub from the event loop (`serve --event-loop`,
# `Hub::serve_on_event_loop`) in both measures.
#
# HOLD (default 4) is how long the connections stay open and idle before the reading. Not a
# test: numbers depend on the machine and on the allocator. Needs Linux (taskset, /proc) and
# a file limit (`ulimit -n`) above COUNT.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root
. e2e/lib.sh

count=${COUNT:-10000} hold=${HOLD:-4} looped=()
while [ $# -gt 0 ]; do
  case $1 in
    --count) count=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --event-loop) looped=(--event-loop); shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server and client apart)" >&2; exit 1; }
[ "$(ulimit -n)" -gt "$((count + 100))" ] ||
  { echo "the file limit ($(ulimit -n)) is below --count $count" >&2; exit 1; }

echo "==> building"
cargo build --release -q -p switchboard-cli
cargo build --release -q -p switchboard-hub --example hub_memory
bin=target/release/switchboard
work=
temp_dir work
results=bench/results/hub-idle-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# open_connections PORT N: the server's open connections, from its /metrics.
open_connections() {
  python3 - "$1" <<'EOF'
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read()
print(next((line.split()[1] for line in body.decode().splitlines()
            if line.startswith("switchboard_connections_open ")), "0"))
EOF
}

# load PORT N SECONDS LOG: N idle subscribed hub connections for SECONDS, in the background.
load() {
  start "$4" taskset -c 1 "$bin" bench "ws://127.0.0.1:$1/ws" --mode hub -c "$2" --rate 1 \
    --duration "$3"
  loader=$started
}

# rss
port=$(free_port)
start "$work/serve.log" taskset -c 0 "$bin" serve --listen "127.0.0.1:$port" ${looped[@]+"${looped[@]}"}
server=$started
wait_port "$port" "$server"
load "$port" 1 1 "$work/warm.log"
reap "$loader"
before=$(rss_kib "$server")
load "$port" "$count" "$((hold + 30))" "$results/rss-bench.log"
e2e_deadline=$((SECONDS + 60))
while e2e_waiting "$loader" && [ "$(open_connections "$port")" -lt "$count" ]; do sleep 0.2; done
[ "$(open_connections "$port")" -ge "$count" ] ||
  { echo "the bench did not open $count connections:" >&2; cat "$results/rss-bench.log" >&2; exit 1; }
sleep "$hold"
after=$(rss_kib "$server")
stop "$loader"
stop "$server"
echo "$count idle subscribed hub connections${looped[@]+ on the event loop}, serve: VmRSS $before KiB before, $after KiB with them:" \
  "$(python3 -c "print(f'{($after - $before) / $count:.2f}')") KiB per connection" | tee "$results/rss.txt"

# heap
port=$(free_port)
start "$results/hub-memory.log" taskset -c 0 target/release/examples/hub_memory "127.0.0.1:$port" ${looped[@]+"${looped[@]}"}
server=$started
wait_port "$port" "$server"
load "$port" "$count" "$((hold + 10))" "$results/heap-bench.log"
E2E_WAIT=60 wait_line "$results/hub-memory.log" "^$((count + 1)) connections: " "$server" >/dev/null
sleep "$hold"
line=$(grep "^$((count + 1)) connections: " "$results/hub-memory.log" | tail -1)
stop "$loader"
stop "$server"
echo "hub_memory: ${line#* connections: } (over $count connections and the one that watches)" \
  | tee "$results/heap.txt"
