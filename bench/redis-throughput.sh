#!/usr/bin/env bash
# bench/redis-throughput.sh: throughput and latency of the hub alone and through Redis.
#
# Starts three redis-servers (free loopback ports, no persistence) and switchboard nodes on
# free ports, runs `switchboard bench --mode hub` against them, and stops everything by PID:
#
#   (h) one node, in-process broker: publishers and a subscriber on the same node
#   (i) one node, Redis broker: the same, every message through Redis
#   (j) three nodes, Redis broker: publishers on A, subscribers on B and C; on one channel,
#       then on two (the load of (k), through one Redis)
#   (k) three nodes sharing two Redis shards: publishers on A, subscribers on B and C, on two
#       channels, one on each shard
#   (l) the same on a Redis Cluster of three masters (--broker-cluster), the two channels on
#       two of them
#   each at the highest rate acknowledgements allow, then at a fixed rate (RATE, default
#   2000/s) and, for (j) and (k) on two channels, at HALF/s (default 40000, about half
#   their peak here) for latency below saturation.
#
#   DURATION=5 SIZE=64 RATE=2000 HALF=40000 PUBLISHERS=16 bench/redis-throughput.sh
#
# BIN names another build of `switchboard` (to compare two commits on the same machine);
# without it, it is built here. Each run reports the CPU time of
# the node the publishers reach (`--server-pid`) and of the other programs (Redis, the other
# nodes, anything else running), and the CPU of the deployment's nodes and Redis servers per
# delivery (`--cpu-pid`). Everything, the load generator too, shares the machine's cores.
# Not a test: numbers depend on the machine and on what else runs on it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root
. e2e/lib.sh
duration=${DURATION:-5}
size=${SIZE:-64}
rate=${RATE:-2000}
half=${HALF:-40000}

if [ -z "${BIN:-}" ]; then cargo build --release -q -p switchboard-cli; fi
bin=${BIN:-target/release/switchboard}
temp_dir logs

redis() {  # redis PORT: sets redis_pid
  start "$logs/redis-$1.log" redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no
  wait_port "$1" "$started"
  redis_pid=$started
}
redis_port=$(free_port); redis "$redis_port"; r_pid=$redis_pid
shard0=$(free_port); redis "$shard0"; s0_pid=$redis_pid
shard1=$(free_port); redis "$shard1"; s1_pid=$redis_pid

node() {  # node PORT [serve args..]
  local port=$1; shift
  start "$logs/node-$port.log" env RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" "$@"
  wait_port "$port" "$started"
}
local_port=$(free_port); node "$local_port"; local_pid=$started
a=$(free_port); node "$a" --broker "redis://127.0.0.1:$redis_port"; a_pid=$started
b=$(free_port); node "$b" --broker "redis://127.0.0.1:$redis_port"; b_pid=$started
c=$(free_port); node "$c" --broker "redis://127.0.0.1:$redis_port"; c_pid=$started
shards="redis://127.0.0.1:$shard0,redis://127.0.0.1:$shard1"
ka=$(free_port); node "$ka" --broker "$shards"; ka_pid=$started
kb=$(free_port); node "$kb" --broker "$shards"; kb_pid=$started
kc=$(free_port); node "$kc" --broker "$shards"; kc_pid=$started

member() {  # member PORT: a Redis Cluster member (its bus on a free port); sets redis_pid
  start "$logs/redis-$1.log" redis-server --port "$1" --bind 127.0.0.1 --save '' \
    --appendonly no --cluster-enabled yes --cluster-port "$(free_port)" \
    --cluster-config-file "$logs/nodes-$1.conf"
  wait_port "$1" "$started"
  redis_pid=$started
}
masters=()
l_cpu=()
for _ in 0 1 2; do
  port=$(free_port); member "$port"; masters+=("$port"); l_cpu+=(--cpu-pid "$redis_pid")
done
redis-cli --cluster create "${masters[@]/#/127.0.0.1:}" --cluster-yes >/dev/null
for port in "${masters[@]}"; do
  until redis-cli -p "$port" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
done
seeds=$(printf 'redis://127.0.0.1:%s,' "${masters[@]}")
la=$(free_port); node "$la" --broker "${seeds%,}" --broker-cluster; la_pid=$started
lb=$(free_port); node "$lb" --broker "${seeds%,}" --broker-cluster; lb_pid=$started
lc=$(free_port); node "$lc" --broker "${seeds%,}" --broker-cluster; lc_pid=$started
l_cpu+=(--cpu-pid "$la_pid" --cpu-pid "$lb_pid" --cpu-pid "$lc_pid")
# CPU per delivery counts these.
h_cpu=(--cpu-pid "$local_pid")
i_cpu=(--cpu-pid "$a_pid" --cpu-pid "$r_pid")
j_cpu=("${i_cpu[@]}" --cpu-pid "$b_pid" --cpu-pid "$c_pid")
k_cpu=(--cpu-pid "$ka_pid" --cpu-pid "$kb_pid" --cpu-pid "$kc_pid" --cpu-pid "$s0_pid"
  --cpu-pid "$s1_pid")
# Two channels on different shards: the nodes' hash puts m6-a and l4-a on the first, m6-b and
# l4-b on the second (checked at the end).

run() {  # run TITLE [bench args..]: one subscriber per --subscribe
  local title=$1 subscribers=0 first='' previous='' arg
  shift
  for arg in "$@"; do
    if [ "$previous" = --subscribe ]; then
      subscribers=$((subscribers + 1))
      [ -n "$first" ] || first=$arg
    fi
    previous=$arg
  done
  echo
  echo "== $title"
  "$bin" bench --mode hub "$first" -c "$subscribers" --duration "${duration}s" --size "$size" "$@"
}
# A publisher keeps 64 publications out that not every subscriber has received (8 each with
# several publishers); a node sends its publishes to Redis in pipelined batches. PUBLISHERS
# connections (default 16) show what a node does with many.
many=${PUBLISHERS:-16}
several() { echo --publishers "$many" --publish "$1"; }
run "(h) one node, in-process broker, 1 publisher (max rate)" --channel m1 -m 64 \
  --server-pid "$local_pid" "${h_cpu[@]}" \
  --publish "ws://127.0.0.1:$local_port/ws" --subscribe "ws://127.0.0.1:$local_port/ws"
run "(i) one node, Redis broker, 1 publisher (max rate)" --channel m3 -m 64 \
  --server-pid "$a_pid" "${i_cpu[@]}" \
  --publish "ws://127.0.0.1:$a/ws" --subscribe "ws://127.0.0.1:$a/ws"
# shellcheck disable=SC2046
run "(i) one node, Redis broker, $many publishers (max rate)" --channel m4 -m 8 \
  --server-pid "$a_pid" "${i_cpu[@]}" \
  $(several "ws://127.0.0.1:$a/ws") --subscribe "ws://127.0.0.1:$a/ws"
# shellcheck disable=SC2046
run "(j) three nodes, Redis broker: $many publishers on A, subscribers on B and C (max rate)" \
  --channel m5 -m 8 --server-pid "$a_pid" "${j_cpu[@]}" \
  $(several "ws://127.0.0.1:$a/ws") \
  --subscribe "ws://127.0.0.1:$b/ws" --subscribe "ws://127.0.0.1:$c/ws"
two=(--channel m6-a --channel m6-b -m 8)
# shellcheck disable=SC2046
run "(j) the same on two channels (max rate)" "${two[@]}" --server-pid "$a_pid" "${j_cpu[@]}" \
  $(several "ws://127.0.0.1:$a/ws") \
  --subscribe "ws://127.0.0.1:$b/ws" --subscribe "ws://127.0.0.1:$c/ws"
# shellcheck disable=SC2046
run "(k) three nodes, two Redis shards: $many publishers on A, subscribers on B and C, a channel on each shard (max rate)" \
  "${two[@]}" --server-pid "$ka_pid" "${k_cpu[@]}" $(several "ws://127.0.0.1:$ka/ws") \
  --subscribe "ws://127.0.0.1:$kb/ws" --subscribe "ws://127.0.0.1:$kc/ws"
# shellcheck disable=SC2046
run "(l) three nodes, a Redis Cluster of three masters: $many publishers on A, subscribers on B and C, the channels on two masters (max rate)" \
  "${two[@]}" --server-pid "$la_pid" "${l_cpu[@]}" $(several "ws://127.0.0.1:$la/ws") \
  --subscribe "ws://127.0.0.1:$lb/ws" --subscribe "ws://127.0.0.1:$lc/ws"
# shellcheck disable=SC2046
run "(j) two channels, $half/s" "${two[@]}" --rate "$half" "${j_cpu[@]}" \
  $(several "ws://127.0.0.1:$a/ws") \
  --subscribe "ws://127.0.0.1:$b/ws" --subscribe "ws://127.0.0.1:$c/ws"
# shellcheck disable=SC2046
run "(k) two shards, a channel on each, $half/s" "${two[@]}" --rate "$half" "${k_cpu[@]}" \
  $(several "ws://127.0.0.1:$ka/ws") \
  --subscribe "ws://127.0.0.1:$kb/ws" --subscribe "ws://127.0.0.1:$kc/ws"
# shellcheck disable=SC2046
run "(l) a Redis Cluster, the channels on two masters, $half/s" "${two[@]}" --rate "$half" \
  "${l_cpu[@]}" $(several "ws://127.0.0.1:$la/ws") \
  --subscribe "ws://127.0.0.1:$lb/ws" --subscribe "ws://127.0.0.1:$lc/ws"
run "(h) one node, in-process broker, $rate/s" --channel l1 -m 64 --rate "$rate" \
  --publish "ws://127.0.0.1:$local_port/ws" --subscribe "ws://127.0.0.1:$local_port/ws"
run "(j) three nodes, Redis broker, $rate/s: publish on A, subscribe on B and C" --channel l3 \
  -m 64 --rate "$rate" --publish "ws://127.0.0.1:$a/ws" \
  --subscribe "ws://127.0.0.1:$b/ws" --subscribe "ws://127.0.0.1:$c/ws"
run "(k) two shards, $rate/s: publishers on A, subscribe on B and C, a channel on each shard" \
  --channel l4-a --channel l4-b -m 64 --rate "$rate" --publishers 2 --publish "ws://127.0.0.1:$ka/ws" \
  --subscribe "ws://127.0.0.1:$kb/ws" --subscribe "ws://127.0.0.1:$kc/ws"
run "(l) a Redis Cluster, $rate/s: publishers on A, subscribe on B and C, the channels on two masters" \
  --channel l4-a --channel l4-b -m 64 --rate "$rate" --publishers 2 --publish "ws://127.0.0.1:$la/ws" \
  --subscribe "ws://127.0.0.1:$lb/ws" --subscribe "ws://127.0.0.1:$lc/ws"

echo
for shard in "$shard0" "$shard1"; do
  printf 'shard on port %s holds:' "$shard"
  for channel in m6-a m6-b l4-a l4-b; do
    if [ "$(redis-cli -p "$shard" exists "switchboard:meta:$channel")" = 1 ]; then
      printf ' %s' "$channel"
    fi
  done
  echo
done
for master in "${masters[@]}"; do
  printf 'cluster master on port %s holds:' "$master"
  for channel in m6-a m6-b l4-a l4-b; do
    if [ "$(redis-cli -p "$master" exists "switchboard:meta:{$channel}")" = 1 ]; then
      printf ' %s' "$channel"
    fi
  done
  echo
done
