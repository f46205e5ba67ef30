#!/usr/bin/env bash
# bench/api-throughput.sh: publishes through the server HTTP API beside WebSocket publishes,
# on the same server.
#
# Starts one `switchboard serve --api-key` (hub mode, in-process broker) on CPU 0 and runs
# `switchboard bench --mode hub` on CPU 1, in interleaved rounds (W1 W16 A1 A16, W1 W16 A1 A16, ... so that
# drift of the machine hits all alike) of four workloads, each at the highest rate answers
# allow:
#
#   W1   WebSocket publishes (the hub protocol) from 1 connection
#   W16  WebSocket publishes from 16 connections
#   A1   POST /api/publish over 1 HTTP/1.1 keep-alive connection (one request in flight)
#   A16  POST /api/publish over 16 keep-alive connections
#
# Every run publishes SIZE bytes of padding on a channel of its own, with one WebSocket
# subscriber on it, so that each publish is also delivered (the server's CPU includes that
# delivery, the same for both). A WebSocket publisher keeps WINDOW publishes unacknowledged
# (default 1: as many in flight as an API connection has, so that the rows compare the cost of
# a publish, not batching). For each run: acknowledged publishes per second, and the server's
# CPU time (user + system, from /proc/PID/stat, read by the load generator at the start and
# the end of the measured window, warm-up excluded) divided by the publishes acknowledged in
# it (and the user-space part of that). Prints the medians and the ratios API / WS, and checks
# the target: an API publish costs at most 2x the server CPU of a WebSocket publish.
#
#   bench/api-throughput.sh [--rounds N] [--duration S] [--size BYTES] [--window N]
#   ROUNDS=3 DURATION=5 SIZE=64 WINDOW=1 WARMUP=1 bench/api-throughput.sh
#
# As bench/run.sh does: server and load generator run at nice NICE (default -10 when run as
# root, else 0); before each run the script waits (up to QUIET_WAIT seconds, default 120) for
# the machine to be quiet, and a run during which other programs used more than MAX_OTHER_LOAD
# of a core (default 0.15) is repeated up to RETRIES times (default 3), keeping the least
# disturbed. The raw output of every run goes to bench/results/api-TIME/.
# Not a test: numbers depend on the machine and on what else runs on it. Needs Linux
# (taskset, /proc) and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root
. e2e/lib.sh

rounds=${ROUNDS:-3} duration=${DURATION:-5} size=${SIZE:-64} window=${WINDOW:-1}
warmup=${WARMUP:-1}
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -eq 0 ]; then nice=${NICE:--10}; else nice=${NICE:-0}; fi
max_other=${MAX_OTHER_LOAD:-0.15}
retries=${RETRIES:-3}
quiet_wait=${QUIET_WAIT:-120}
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server and load generator apart)" >&2; exit 1; }

echo "==> building"
cargo build --release -q -p switchboard-cli
bin=target/release/switchboard
out=bench/results/api-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

key=bench-$RANDOM$RANDOM
port=$(free_port)
# nice and taskset exec the server: its PID is the server's own (what /proc is read for).
start "$out/server.log" nice -n "$nice" taskset -c 0 \
  env RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --api-key "$key"
server_pid=$started
wait_port "$port" "$server_pid"
ws=ws://127.0.0.1:$port/ws
api=http://127.0.0.1:$port/api/publish

publishers() {  # publishers W1|W16|A1|A16: the bench arguments of its publishers
  local n=${1#?} flag i
  case $1 in W*) flag=(--publish "$ws") ;; A*) flag=(--api-publish "$api") ;; esac
  for ((i = 0; i < n; i++)); do printf '%s\n' "${flag[@]}"; done
  case $1 in A*) printf '%s\n' --api-key "$key" ;; esac
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
      echo "  machine still busy ($busy cores used by others), measuring anyway"
      return 0
    fi
    sleep 4
    waited=$((waited + 5))
  done
}

measure() {  # measure ROUND WORKLOAD: the least disturbed of up to $retries runs
  local round=$1 w=$2 file=$out/$2-$1.json attempt other best_other='' args
  mapfile -t args < <(publishers "$w")
  for ((attempt = 1; attempt <= retries; attempt++)); do
    wait_quiet
    # Bounded: the generator ends by itself after the warm-up, the window and a second.
    nice -n "$nice" taskset -c 1 timeout "$((${warmup%.*} + ${duration%.*} + 30))" \
      "$bin" bench --mode hub "$ws" -c 1 --channel "r$round-$w-$attempt" --size "$size" \
      --in-flight "$window" --duration "${duration}s" --warmup "${warmup}s" \
      --server-pid "$server_pid" --json "${args[@]}" >"$file.try" 2>"$file.err" || {
      echo "the load generator failed ($w, round $round):" >&2
      cat "$file.try" "$file.err" >&2
      exit 1
    }
    other=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["cpu"]; print("%.2f" % (c["other_s"] / c["window_s"]))' "$file.try")
    echo "  round $round $w attempt $attempt: $(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("%.0f acked publishes/s, %.2f us per acked publish" % (
    r["published"] / r["duration_s"], r["cpu"]["server_s"] * 1e6 / max(r["published"], 1)))' "$file.try"), others used $other cores"
    if [ -z "$best_other" ] || awk -v o="$other" -v b="$best_other" 'BEGIN{exit !(o < b)}'; then
      mv "$file.try" "$file"
      best_other=$other
    fi
    awk -v o="$best_other" -v m="$max_other" 'BEGIN{exit !(o <= m)}' && break
  done
  rm -f "$file.try" "$file.err"
}

workloads=(W1 W16 A1 A16)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (with local changes)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "rounds: $rounds of ${workloads[*]}, duration: ${duration}s, warm-up: ${warmup}s," \
    "size: $size, WebSocket window: $window, nice: $nice"
  echo "retry when others use more than $max_other cores (up to $retries attempts; quiet wait ${quiet_wait}s)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/conditions.txt"
cat "$out/conditions.txt"
for ((round = 1; round <= rounds; round++)); do
  for w in "${workloads[@]}"; do
    measure "$round" "$w"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/conditions.txt"
kill -0 "$server_pid" 2>/dev/null || { echo "the server exited:" >&2; cat "$out/server.log" >&2; exit 1; }
stop "$server_pid"

python3 - "$out" "$rounds" "$size" "$window" <<'EOF'
import json, statistics, sys
from pathlib import Path

out, rounds, size, window = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
names = {"W1": "WebSocket, 1 connection", "W16": "WebSocket, 16 connections",
         "A1": "API, 1 connection", "A16": "API, 16 connections"}
runs, problems = {}, []
for w in names:
    for r in range(1, rounds + 1):
        path = out / f"{w}-{r}.json"
        report = json.loads(path.read_text())
        cpu, hub = report["cpu"], report["hub"]
        if cpu.get("server_s") is None or not report["published"]:
            sys.exit(f"cannot read {path}:\n{path.read_text()}")
        rate = report["published"] / report["duration_s"]
        seen = [f"{report['errors']} errors: {report['error_samples']}"] if report["errors"] else []
        if report["missed"] or hub["duplicates"]:
            seen.append(f"{report['missed']} missed, {hub['duplicates']} duplicated")
        if report["msgs_per_sec"] < 0.99 * rate:
            seen.append(f"{report['msgs_per_sec']:.0f} deliveries/s for {rate:.0f} publishes/s")
        if seen:
            problems.append(f"{w} round {r}: {', '.join(seen)} (see {path})")
        # publishes/s, server µs per publish, of which user, others' cores
        total, user = cpu["server_s"], cpu.get("server_user_s") or 0.0
        per_publish = total * 1e6 / report["published"]
        user_share = user / total if total else 0.0
        runs.setdefault(w, []).append(
            (rate, per_publish, per_publish * user_share, cpu["other_s"] / cpu["window_s"]))

def med(w, i):
    return statistics.median(run[i] for run in runs[w])

def spread(w, i, fmt):
    values = [run[i] for run in runs[w]]
    return f"{fmt(med(w, i))} ({fmt(min(values))}–{fmt(max(values))})"

count = lambda v: f"{v:,.0f}"
micros = lambda v: f"{v:.2f}"
print(f"\nmedians of {rounds} rounds (min–max); {size}-byte padding, one subscriber,"
      f" WebSocket window {window}\n")
print("| | publishes/s | server µs CPU per publish | of which user | other programs (cores) |")
print("|---|---|---|---|---|")
for w, name in names.items():
    print(f"| {name} | {spread(w, 0, count)} | {spread(w, 1, micros)} | {med(w, 2):.2f}"
          f" | {med(w, 3):.2f} |")
verdicts = []
for n in ("1", "16"):
    throughput = med(f"A{n}", 0) / med(f"W{n}", 0)
    cpu = med(f"A{n}", 1) / med(f"W{n}", 1)
    verdicts.append(cpu)
    plural = "" if n == "1" else "s"
    user = med(f"A{n}", 2) / med(f"W{n}", 2)
    print(f"| API ÷ WebSocket, {n} connection{plural} | {throughput:.2f}× | {cpu:.2f}×"
          f" | {user:.2f}× | |")
met = all(v <= 2.0 for v in verdicts)
print(f"\ntarget: API CPU per publish ≤ 2× WebSocket: {'met' if met else 'NOT met'}"
      f" ({verdicts[0]:.2f}× with 1 connection, {verdicts[1]:.2f}× with 16)")
for p in problems:
    print(f"warning: {p}")
print(f"raw output: {out}")
EOF
