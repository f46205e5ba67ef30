#!/usr/bin/env bash
# bench/redis-throughput.sh: throughput and latency of the hub alone and through Redis.
#
# Starts redis-server (free loopback port, no persistence) and switchboard nodes on free
# ports, runs the hub_bench example against them, and stops everything by PID:
#
#   - one node, in-process broker: publishers and a subscriber on the same node
#   - one node, Redis broker: the same, every message through Redis
#   - three nodes, Redis broker: publishers on A, subscribers on B and C
#   each at the highest rate acknowledgements allow, then at a fixed rate (RATE, default
#   2000/s) for latency below saturation.
#
#   DURATION=5 SIZE=64 RATE=2000 PUBLISHERS=16 bench/redis-throughput.sh
#
# BIN and BENCH name other builds of `switchboard` and `hub_bench` (to compare two commits
# on the same machine); without them both are built here. Each run reports the CPU time of
# the node the publishers reach (`--server-pid`) and of the other programs (Redis, the other
# nodes, anything else running).
# Not a test: numbers depend on the machine and on what else runs on it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root
. e2e/lib.sh
duration=${DURATION:-5}
size=${SIZE:-64}
rate=${RATE:-2000}

if [ -z "${BIN:-}" ]; then cargo build --release -q -p switchboard-cli; fi
if [ -z "${BENCH:-}" ]; then
  cargo build --release -q -p switchboard-hub --features redis --example hub_bench
fi
bin=${BIN:-target/release/switchboard}
bench=${BENCH:-target/release/examples/hub_bench}
temp_dir logs

redis_port=$(free_port)
start "$logs/redis.log" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no
wait_port "$redis_port" "$started"

node() {  # node PORT [serve args..]
  local port=$1; shift
  start "$logs/node-$port.log" env RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" "$@"
  wait_port "$port" "$started"
}
local_port=$(free_port); node "$local_port"; local_pid=$started
a=$(free_port); node "$a" --broker "redis://127.0.0.1:$redis_port"; a_pid=$started
b=$(free_port); node "$b" --broker "redis://127.0.0.1:$redis_port"
c=$(free_port); node "$c" --broker "redis://127.0.0.1:$redis_port"

run() {  # run TITLE [hub_bench args..]
  echo
  echo "== $1"
  shift
  "$bench" --duration "$duration" --size "$size" "$@"
}
# A publisher keeps 64 publishes unacknowledged (8 each with several publishers); a node
# sends its publishes to Redis in pipelined batches. PUBLISHERS connections (default 16)
# show what a node does with many. (In-process, many publishers outrun one subscriber, which
# is then closed with 1013.)
many=${PUBLISHERS:-16}
several() { local i; for ((i = 0; i < many; i++)); do echo --publish "$1"; done; }
run "one node, in-process broker, 1 publisher (max rate)" --channel m1 --server-pid "$local_pid" \
  --publish "ws://127.0.0.1:$local_port/ws" --subscribe "ws://127.0.0.1:$local_port/ws"
run "one node, Redis broker, 1 publisher (max rate)" --channel m3 --server-pid "$a_pid" \
  --publish "ws://127.0.0.1:$a/ws" --subscribe "ws://127.0.0.1:$a/ws"
# shellcheck disable=SC2046
run "one node, Redis broker, $many publishers (max rate)" --channel m4 --window 8 \
  --server-pid "$a_pid" \
  $(several "ws://127.0.0.1:$a/ws") --subscribe "ws://127.0.0.1:$a/ws"
# shellcheck disable=SC2046
run "three nodes, Redis broker: $many publishers on A, subscribers on B and C (max rate)" \
  --channel m5 --window 8 --server-pid "$a_pid" $(several "ws://127.0.0.1:$a/ws") \
  --subscribe "ws://127.0.0.1:$b/ws" --subscribe "ws://127.0.0.1:$c/ws"
run "one node, in-process broker, $rate/s" --channel l1 --rate "$rate" \
  --publish "ws://127.0.0.1:$local_port/ws" --subscribe "ws://127.0.0.1:$local_port/ws"
run "three nodes, Redis broker, $rate/s: publish on A, subscribe on B and C" --channel l3 \
  --rate "$rate" --publish "ws://127.0.0.1:$a/ws" \
  --subscribe "ws://127.0.0.1:$b/ws" --subscribe "ws://127.0.0.1:$c/ws"
