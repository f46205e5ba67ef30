#!/usr/bin/env bash
# bench/pusher.sh: pusher-js clients on a presence channel, fed through Pusher's HTTP API,
# beside the hub's own clients on a channel fed through the hub's server API, on the same
# server.
#
# Starts one `switchboard serve --pusher-app ID:KEY:SECRET --api-key KEY` (in-process broker)
# pinned to SERVER_CPU (default 0) and runs the load generator, bench/pusher/coordinator.mjs
# (Node), pinned to LOAD_CPUS (default 1), in interleaved rounds of two kinds:
#
#   pusher  CONNECTIONS pusher-js clients (default 500) in PROCS processes (default 2), each
#           on presence-* (authorized locally with the `pusher` library's authorizeChannel, as
#           an app's auth endpoint does, a user per client), and events posted by the
#           `pusher` library's `trigger` (POST /apps/ID/events)
#   native  as many clients of the project's JS client (clients/js; over the `ws` package,
#           without permessage-deflate, which pusher-js does not offer) on one hub channel, each
#           a user and a member of its presence (sent its joins and leaves), and events posted
#           to POST /api/publish
#
# Every event carries the same data ({seq, pad}, SIZE bytes of padding, default 64), from
# CONCURRENCY requests in flight (default 8) on keep-alive connections; the publisher keeps at
# most WINDOW events (default 16) that not every subscriber has received. First both kinds at
# full speed, then both at the same rate (EQUAL_SHARE, default 0.8, of the slower one's), as
# the server's CPU per delivery depends on its rate. Per run, over the measured window
# (DURATION after WARMUP): deliveries per second counted by the clients, and the server's CPU
# (utime + stime from /proc/PID/stat) per delivery; then the medians, the ratios pusher ÷
# native and the verdict on the target, taken at the equal rate: a Pusher delivery costs at
# most 1.3× the server CPU of a native one. It says when the load generator or the server
# saturated its cores.
#
#   bench/pusher.sh [--rounds N] [--duration S] [--connections N] [--procs N] [--size BYTES]
#   ROUNDS=3 DURATION=5 CONNECTIONS=500 PROCS=2 SIZE=64 CONCURRENCY=8 WINDOW=16 bench/pusher.sh
#
# KINDS=pusher (or native) runs one kind, at full speed only: to profile the server on one
# wire (`perf record -p PID`, the server's PID printed first). BIN names a `switchboard`
# binary (to compare two commits); without it, the release build is made here. Installs the
# Node packages when missing: e2e/pusher's (pusher-js, pusher), as e2e/pusher/run.sh does,
# and bench/peers/node's (`ws`, the native clients' WebSocket), as bench/run.sh does.
#
# As bench/run.sh does: server and load generator run at nice NICE (default -10 when run as
# root, else 0); before each run it waits (up to QUIET_WAIT seconds, default 60) for the
# machine to be quiet, and a run during which other programs used more than MAX_OTHER_LOAD of
# a core (default 0.15) is repeated up to RETRIES times (default 3), keeping the least
# disturbed. Raw output per run: bench/results/pusher-TIME/. Not a test: numbers depend on
# the machine and on what else runs on it. Needs Linux (taskset, /proc) and Node 20 or later.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root
. e2e/lib.sh

rounds=${ROUNDS:-3} duration=${DURATION:-5} warmup=${WARMUP:-1} connections=${CONNECTIONS:-500}
procs=${PROCS:-2} size=${SIZE:-64} concurrency=${CONCURRENCY:-8} window=${WINDOW:-16}
equal_share=${EQUAL_SHARE:-0.8} server_cpu=${SERVER_CPU:-0} load_cpus=${LOAD_CPUS:-1}
max_other=${MAX_OTHER_LOAD:-0.15} retries=${RETRIES:-3} quiet_wait=${QUIET_WAIT:-60}
if [ "$(id -u)" -eq 0 ]; then nice=${NICE:--10}; else nice=${NICE:-0}; fi
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --procs) procs=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server and load generator apart)" >&2; exit 1; }
command -v node >/dev/null || { echo "needs node (20 or later) and npm" >&2; exit 1; }

if [ -z "${BIN:-}" ]; then
  echo "==> building"
  cargo build --release -q -p switchboard-cli
fi
bin=${BIN:-target/release/switchboard}
# The packages of e2e/pusher, reinstalled only when its lock file changed (as its run.sh).
if ! cmp -s e2e/pusher/package-lock.json e2e/pusher/node_modules/.installed-from-lock 2>/dev/null; then
  (cd e2e/pusher && npm ci --no-audit --no-fund --loglevel=error &&
    cp package-lock.json node_modules/.installed-from-lock)
fi
# The native clients' WebSocket: the `ws` package of bench/peers/node (as bench/run.sh).
if [ ! -f bench/peers/node/node_modules/ws/package.json ]; then
  (cd bench/peers/node && npm ci --no-audit --no-fund --silent)
fi
out=bench/results/pusher-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

app=1:bench-key:bench-secret-$RANDOM$RANDOM
api_key=bench-$RANDOM$RANDOM
port=$(free_port)
# nice and taskset exec the server: its PID is the server's own (what /proc is read for).
start "$out/server.log" nice -n "$nice" taskset -c "$server_cpu" \
  env RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --pusher-app "$app" --api-key "$api_key"
server_pid=$started
wait_port "$port" "$server_pid"

load_cores=$(taskset -c "$load_cpus" nproc)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (with local changes)')"
  echo "binary: $bin${BIN:+ (given; the commit above is that of the scripts)}"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores;" \
    "server on CPU $server_cpu, load generator on CPU $load_cpus"
  echo "node: $(node --version); rounds: $rounds, duration: ${duration}s, warm-up: ${warmup}s;" \
    "$connections subscribers in $procs processes, size: $size, concurrency: $concurrency, window: $window, nice: $nice"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/conditions.txt"
echo "server PID: $server_pid"
cat "$out/conditions.txt"

# Bounded: every run ends by itself; the timeout is for a run that hangs.
limit=$(((quiet_wait + ${warmup%.*} + ${duration%.*} + 75) * retries * rounds * 4 + 60))
nice -n "$nice" taskset -c "$load_cpus" timeout "$limit" node bench/pusher/coordinator.mjs \
  --port "$port" --server-pid "$server_pid" --api-key "$api_key" --app "$app" --out "$out" \
  --connections "$connections" --procs "$procs" --size "$size" --window "$window" \
  --concurrency "$concurrency" --duration "$duration" --warmup "$warmup" --rounds "$rounds" \
  --equal-share "$equal_share" --load-cores "$load_cores" \
  --max-other "$max_other" --retries "$retries" --quiet-wait "$quiet_wait" | tee "$out/output.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/conditions.txt"
kill -0 "$server_pid" 2>/dev/null || { echo "the server exited:" >&2; cat "$out/server.log" >&2; exit 1; }
stop "$server_pid"
echo "raw output: $out"
