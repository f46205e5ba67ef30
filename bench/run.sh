#!/usr/bin/env bash
# bench/run.sh: switchboard side by side with its peers, one command from build to report.
#
# Builds switchboard, the peer servers (bench/peers: tokio-tungstenite, fastwebsockets, Node's
# ws, and the floor: a raw echo in C that answers WebSocket frames without a handshake) and the
# report tool, then runs every workload against every server (the raw echo in all but (e)),
# interleaved (A B C D E, A B C D E, ... so that drift of the machine hits all alike), with the
# server on CPU 0 and the load generator (`switchboard bench`) on CPU 1. Writes the raw JSON to
# bench/results/<time>/ and the summary to bench/REPORT.md and bench/chart.svg.
#
#   bench/run.sh [--rounds N] [--duration S] [--warmup S] [--workloads abcdefg] [--servers LIST]
#
#   --rounds N        rounds of every workload and server (default 3; medians need 3 or more)
#   --duration S      measured seconds per run (default 10)
#   --warmup S        warm-up seconds before each measured window (default 2)
#   --workloads W     which workloads, e.g. "abc" (default abcdefg, see bench/REPORT.md)
#   --servers LIST    comma-separated subset of switchboard,switchboard-loop (serve
#                     --event-loop),tungstenite,fastwebsockets,ws,raw
#   --no-report       leave bench/REPORT.md and bench/chart.svg alone
#   --baseline BIN    also run BIN, a switchboard binary built from another commit, as the
#                     server "baseline" (interleaved like the others), and print this build
#                     against it, row by row; implies --no-report. For example, against the
#                     previous commit:
#                       git worktree add /tmp/base HEAD~1 && cargo build --release \
#                         --manifest-path /tmp/base/Cargo.toml -p switchboard-cli
#                       bench/run.sh --servers switchboard --baseline /tmp/base/target/release/switchboard
#
# Server and load generator run at nice NICE (default -10 when run as root, else 0), so that
# background work on a shared machine disturbs them less; every server gets the same.
# A measurement during which other programs used more than MAX_OTHER_LOAD of a core on
# average (default 0.15; the load generator reports it from /proc/stat) is retried up to
# RETRIES times (default 3), and the least disturbed attempt is kept. Before each measurement
# the script waits (up to QUIET_WAIT seconds, default 120) for the machine to be quiet.
# Needs Linux (taskset, /proc), gcc, node and npm; installs what is missing on Debian.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root
. e2e/lib.sh

rounds=3 duration=10 warmup=2 workloads=abcdefg report=1 baseline=
servers=switchboard,switchboard-loop,tungstenite,fastwebsockets,ws,raw
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --no-report) report=; shift ;;
    --baseline) baseline=$(realpath "$2"); report=; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
max_other=${MAX_OTHER_LOAD:-0.15}
retries=${RETRIES:-3}
quiet_wait=${QUIET_WAIT:-120}
if [ "$(id -u)" -eq 0 ]; then nice=${NICE:--10}; else nice=${NICE:-0}; fi
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server and load generator apart)" >&2; exit 1; }

# --- prerequisites -------------------------------------------------------------------------
need_apt=()
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v taskset >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

echo "==> building"
cargo build --release -q -p switchboard-cli
cargo build --release -q --manifest-path bench/Cargo.toml
mkdir -p bench/target
gcc -O2 -Wall -Wextra -o bench/target/raw-echo bench/peers/raw-echo/raw-echo.c
if [ ! -f bench/peers/node/node_modules/ws/package.json ]; then
  (cd bench/peers/node && npm ci --no-audit --no-fund --silent)
fi

# 10,000 connections on each side, plus a few.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 20100 ] || echo "warning: only $(ulimit -n) file descriptors: (e) and (f) may fail" >&2

bench=target/release/switchboard
out=bench/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
log=$out/log.txt

# --- servers ---------------------------------------------------------------------------------
server_pid=
server_addr=
start_server() {  # start_server NAME MODE: sets server_pid and server_addr
  local name=$1 mode=$2 cmd
  case $name in
    switchboard) cmd=(env RUST_LOG=info "$bench" serve --mode "$mode" --listen 127.0.0.1:0) ;;
    switchboard-loop) cmd=(env RUST_LOG=info "$bench" serve --mode "$mode" --event-loop --listen 127.0.0.1:0) ;;
    baseline) cmd=(env RUST_LOG=info "$baseline" serve --mode "$mode" --listen 127.0.0.1:0) ;;
    tungstenite) cmd=(bench/target/release/tungstenite-peer 127.0.0.1:0 "$mode") ;;
    fastwebsockets) cmd=(bench/target/release/fastwebsockets-peer 127.0.0.1:0 "$mode") ;;
    ws) cmd=(node bench/peers/node/server.js 127.0.0.1:0 "$mode") ;;
    raw) cmd=(bench/target/raw-echo 127.0.0.1:0) ;;
  esac
  # nice and taskset exec the server: its PID is the server's own (what /proc is read for).
  start "$out/server.out" nice -n "$nice" taskset -c 0 "${cmd[@]}"
  server_pid=$started
  server_addr=$(wait_line "$out/server.out" '127\.0\.0\.1:[0-9]*' "$server_pid") || {
    echo "server $name did not start" >&2
    return 1
  }
}
stop_server() {
  [ -n "$server_pid" ] || return 0
  stop "$server_pid"
  server_pid=
}

# The machine's busy share of one core over a second (everything, ours included).
busy_cores() {
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  sleep 1
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  echo "$a $b $(nproc)" | awk '{printf "%.2f", ($3-$1)/($4-$2)*$5}'
}
wait_quiet() {
  local waited=0 busy
  while :; do
    busy=$(busy_cores)
    awk -v b="$busy" -v m="$max_other" 'BEGIN{exit !(b <= m)}' && return 0
    if [ "$waited" -ge "$quiet_wait" ]; then
      echo "  machine still busy ($busy cores used by others), measuring anyway" | tee -a "$log"
      return 0
    fi
    sleep 4
    waited=$((waited + 5))
  done
}

# --- workloads ----------------------------------------------------------------------------
workload_args() {  # workload_args ID: the server mode, then the bench arguments
  case $1 in
    a) echo "echo --mode echo -c 100 --size 16 -m 1" ;;
    b) echo "echo --mode echo -c 100 --size 16 -m 16" ;;
    c) echo "echo --mode echo -c 100 --size 1024 --binary -m 16" ;;
    d) echo "echo --mode echo -c 1 --size 1048576 --binary -m 1" ;;
    e) echo "broadcast --mode broadcast -c 10000 --size 16 -m 8 --connect-concurrency 128" ;;
    f) echo "echo --mode idle -c 10000 --connect-concurrency 128" ;;
    g) echo "echo --mode handshakes -c 32" ;;
  esac
}

other_share() {  # other_share FILE: others' average share of a core over the window
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
c = r.get("cpu") or {}
print("%.3f" % ((c.get("other_s") or 0) / (c.get("window_s") or 1)))' "$1"
}

summary() {  # summary FILE: one line of a result
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
c = r.get("cpu") or {}
m = r.get("memory") or {}
print("%.0f/s %.1f MB/s, server %.2f us/msg, %s KiB/conn, errors %d, others used %.2f cores" % (
    r["msgs_per_sec"], r["mb_per_sec"], c.get("server_us_per_msg") or 0,
    m.get("per_connection_kib", "-"), r["errors"], (c.get("other_s") or 0) / (c.get("window_s") or 1)))' "$1"
}

measure() {  # measure ROUND WORKLOAD SERVER
  local round=$1 w=$2 s=$3 args mode file best= best_other= attempt other
  read -r mode args <<<"$(workload_args "$w")"
  [ "$s" = raw ] && [ "$w" = e ] && return 0  # the raw echo only echoes
  file=$out/r$round-$w-$s.json
  for attempt in $(seq "$retries"); do
    wait_quiet
    start_server "$s" "$mode"
    local extra=(--duration "$duration" --warmup "$warmup")
    [ "$w" = f ] && extra=(--duration 2 --warmup 0)
    [ "$s" = raw ] && extra+=(--raw)
    # shellcheck disable=SC2086  # $args is a list of arguments
    if ! nice -n "$nice" taskset -c 1 "$bench" bench "ws://$server_addr/" $args "${extra[@]}" \
        --server-pid "$server_pid" --json >"$file.try" 2>>"$log"; then
      echo "  r$round $w $s: the load generator failed (see $log)" | tee -a "$log"
    fi
    stop_server
    [ -s "$file.try" ] || continue
    other=$(other_share "$file.try")
    printf '  r%s %s %-15s attempt %s: %s\n' "$round" "$w" "$s" "$attempt" "$(summary "$file.try")" \
      | tee -a "$log"
    if [ -z "$best" ] || awk -v o="$other" -v b="$best_other" 'BEGIN{exit !(o < b)}'; then
      mv "$file.try" "$file"
      best=1 best_other=$other
    fi
    awk -v o="$best_other" -v m="$max_other" 'BEGIN{exit !(o <= m)}' && break
  done
  rm -f "$file.try"
}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates bench/peers 2>/dev/null || echo ' (with local changes)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "node: $(node --version), ws $(node -p 'require("./bench/peers/node/node_modules/ws/package.json").version')"
  echo "rounds: $rounds, duration: ${duration}s, warm-up: ${warmup}s, nice: $nice"
  echo "retry when others use more than $max_other cores (up to $retries attempts; quiet wait ${quiet_wait}s)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/conditions.txt"
cat "$out/conditions.txt"

IFS=, read -r -a server_list <<<"$servers"
[ -z "$baseline" ] || server_list+=(baseline)
for round in $(seq "$rounds"); do
  echo "==> round $round of $rounds"
  for w in $(echo "$workloads" | grep -o .); do
    for s in "${server_list[@]}"; do
      measure "$round" "$w" "$s"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/conditions.txt"

if [ -n "$baseline" ]; then
  echo "==> this build against $baseline (raw results in $out)"
  bench/target/release/bench-report --compare "$out" switchboard baseline | tee "$out/compare.md"
fi
if [ -n "$report" ]; then
  bench/target/release/bench-report "$out" bench/REPORT.md bench/chart.svg
  echo "==> bench/REPORT.md and bench/chart.svg (raw results in $out)"
fi
