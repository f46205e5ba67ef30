#!/usr/bin/env bash
# e2e/bench-smoke.sh: a seconds-long run of every `switchboard bench` mode against
# `switchboard serve`, checking that each counted something and saw no error; then
# bench/hub-fanout.sh's smoke run (--quick), on 2 CPUs or more. (The full comparison with the
# peers is bench/run.sh; it is not part of the tests.)
#
#   e2e/bench-smoke.sh [PATH_TO_SWITCHBOARD]   default: target/release/switchboard
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root
. e2e/lib.sh
bin=${1:-target/release/switchboard}
temp_dir work
server=

serve() {  # serve MODE [ARGS..]: starts the server, sets $server and $addr
  [ -z "$server" ] || stop "$server"
  start "$work/serve.log" env RUST_LOG=info "$bin" serve --mode "$@" --listen 127.0.0.1:0
  server=$started
  addr=$(wait_line "$work/serve.log" '127\.0\.0\.1:[0-9]*' "$server")
}

check() {  # check NAME ARGS..: runs the bench, requires messages > 0 and no error
  local name=$1 messages errors  # json stays set for a check after the call
  shift
  json=$(timeout 60 "$bin" bench "${scheme:-ws}://$addr${path:-/}" --json --server-pid "$server" "$@")
  messages=$(grep -o '"messages": [0-9]*' <<<"$json" | grep -o '[0-9]*$')
  errors=$(grep -o '"errors": [0-9]*' <<<"$json" | grep -o '[0-9]*$')
  if [ "${messages:-0}" -eq 0 ] || [ "${errors:-1}" -ne 0 ]; then
    echo "FAILED: $name: $messages counted, $errors errors" >&2
    echo "$json" >&2
    return 1
  fi
  echo "ok: $name: $messages counted, 0 errors"
}

serve echo
check "echo, 16 B text, 4 in flight" -c 4 -m 4 -d 2s --warmup 500ms
check "echo, 64 KiB binary" -c 2 --size 65536 --binary -d 1s --warmup 200ms
check "idle connections" --mode idle -c 50 -d 200ms
check "handshakes" --mode handshakes -c 4 -d 1s --warmup 200ms
check "echo, 1 KiB text, permessage-deflate" -c 4 -m 4 --size 1024 -d 1s --warmup 200ms --deflate
# serve answers every deflate offer: each of the 4 connections must have agreed.
grep -q '"deflate_agreed": 4' <<<"$json" || { echo "FAILED: deflate not agreed: $json" >&2; exit 1; }
serve broadcast
check "broadcast, 20 subscribers" --mode broadcast -c 20 -m 4 -d 1s --warmup 200ms
serve hub
path=/ws check "hub, 2 publishers, 20 subscribers, offsets checked" --mode hub -c 20 --publishers 2 -m 4 -d 1s --warmup 200ms
serve echo --tls-self-signed
scheme=wss check "echo over wss://, self-signed" -c 4 -m 4 -d 1s --warmup 200ms -k
stop "$server"
# The fan-out comparison's script end to end (a second per mode): it fails on any error.
if [ "$(nproc)" -ge 2 ]; then
  fanout=$(BIN=$bin bench/hub-fanout.sh --quick 2>&1) ||
    { echo "FAILED: bench/hub-fanout.sh --quick" >&2; echo "$fanout" >&2; exit 1; }
  echo "ok: bench/hub-fanout.sh --quick: $(grep -o 'hub ÷ Topics: [0-9.]*×' <<<"$fanout")"
fi
