#!/usr/bin/env bash
# e2e/autobahn/h2-client.sh BRIDGE CLIENT URL
#
# The client of `run.sh client-h2`, started by autobahn-run with the fuzzingserver's URL as
# the last argument: starts BRIDGE (examples/h2_bridge) from HTTP/2 on a free loopback port
# to URL, and runs CLIENT (examples/autobahn_client) with --http2 against it. The bridge is
# stopped on exit (e2e/lib.sh).
set -euo pipefail

[ $# -eq 3 ] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
bridge=$1 client=$2 url=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib.sh"

port=$(free_port)
start - "$bridge" from-h2 "127.0.0.1:$port" "$url"
wait_port "$port" "$started"
"$client" --http2 "wss://127.0.0.1:$port"
