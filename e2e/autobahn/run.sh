#!/usr/bin/env bash
# e2e/autobahn/run.sh server|server-loop|client|server-h2|client-h2 [--update]
#
# Autobahn|Testsuite conformance run, diffed against the committed expected results
# (e2e/autobahn/expected-MODE.json) by compare.py, so that a suite we cannot pass yet
# is tracked case by case instead of being red forever.
#
#   server    wstest fuzzingclient against `switchboard serve --mode echo` on a free
#             loopback port; report in target/autobahn/server
#   server-loop as server, with `serve --mode echo --event-loop`: the connections served by
#             callbacks from the event loop instead of a task each
#   client    wstest fuzzingserver driven by examples/autobahn_client (which takes the
#             fuzzingserver URL as its last argument); report in target/autobahn/client
#   server-h2 as server, over HTTP/2: wstest speaks HTTP/1.1 to examples/h2_bridge
#             (to-h2), which opens each WebSocket as an extended CONNECT stream of one
#             HTTP/2 connection to `switchboard serve --mode echo --tls-self-signed` and
#             copies the bytes both ways as they are
#   client-h2 as client, over HTTP/2: examples/autobahn_client --http2 opens every case on
#             one HTTP/2 connection to examples/h2_bridge (from-h2), which upgrades each
#             stream over HTTP/1.1 to the fuzzingserver (h2-client.sh starts the bridge)
#   --update  after the run, rewrite expected-MODE.json from the report instead of diffing
#
# Environment:
#   AUTOBAHN_CASES=...               case patterns for autobahn-run --cases; the default is
#                                    sections 1-10 and the compression subset (below);
#                                    '1.*,2.*' for a quick run, '*' for everything (see
#                                    full.sh). Only the selected cases are compared.
#   AUTOBAHN_ARGS=                   more autobahn-run options, split on spaces
#                                    (--exclude, --no-perf, --no-compression,
#                                    --timeout SECONDS, ...)
#   AUTOBAHN_SERVER_CMD              server mode: shell command run instead of switchboard,
#                                    {port} replaced by the port it must listen on
#                                    (127.0.0.1), e.g. 'python3 /tmp/echo.py {port}'
#   AUTOBAHN_CLIENT_CMD              client mode: shell command run instead of the example;
#                                    the URL is appended as its last argument
#   AUTOBAHN_EXPECTED                the expected-results file to use instead of
#                                    e2e/autobahn/expected-MODE.json (harness tests)
#   WSTEST_HOME=/opt/wstest          where autobahn-install put wstest
#   CARGO_TARGET_DIR=target          cargo's, honoured for binaries and reports
#
# Exit status: 0 no regression against expected-MODE.json, 1 regression, 2 harness error
# or no expected file. autobahn-run's own "some case failed" (exit 1) is not an error
# by itself: compare.py decides.
set -euo pipefail

# usage [STATUS]: print the header above; to stderr unless asked for with --help
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&"$((${1:-2} ? 2 : 1))"
  exit "${1:-2}"
}
mode=${1:-}
update=
case $mode in
  server | server-loop | client | server-h2 | client-h2) ;;
  -h | --help) usage 0 ;;
  *) usage ;;
esac
case ${2:-} in
  "") ;;
  --update) update=--update ;;
  *) usage ;;
esac
[ $# -le 2 ] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib.sh"
expected=$(realpath -m "${AUTOBAHN_EXPECTED:-$here/expected-$mode.json}")  # before the cd
cd "$here/../.."  # repo root: cargo, target/ and relative paths below
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")  # as cargo resolves it, from here
outdir=$target/autobahn/$mode

# Default: sections 1-10 and the compression subset of 12/13: every parameter set,
# payloads up to 4 KiB (~1 min; `$` anchors, see FIELD-NOTES). full.sh runs everything.
cases=${AUTOBAHN_CASES:-'1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.*.[1-6]$,13.*.[1-6]$'}
read -r -a extra <<<"${AUTOBAHN_ARGS:-}"

# --- what to test ------------------------------------------------------------------
# cargo build even if the binary exists: a no-op when it is fresh, and a run.sh started
# by hand must not test a stale binary.
if [ "$mode" = server-h2 ]; then
  cargo build --release -q -p switchboard-cli --bin switchboard
  cargo build --release -q -p switchboard --example h2_bridge
  # The server over TLS (HTTP/2 on, as by default); the bridge is what wstest starts.
  mkdir -p "$target/autobahn"
  tls_port=$(free_port)
  start "$target/autobahn/server-h2-serve.log" "$target/release/switchboard" serve --mode echo \
    --listen "127.0.0.1:$tls_port" --tls-self-signed
  wait_port "$tls_port" "$started"
  template="$(printf '%q' "$target/release/examples/h2_bridge") to-h2 127.0.0.1:{port} wss://127.0.0.1:$tls_port"
elif [ "$mode" = client-h2 ]; then
  cargo build --release -q -p switchboard --example h2_bridge --example autobahn_client
  client=("$here/h2-client.sh" "$target/release/examples/h2_bridge"
    "$target/release/examples/autobahn_client")
elif [ "$mode" = server ] || [ "$mode" = server-loop ]; then
  if [ -n "${AUTOBAHN_SERVER_CMD:-}" ]; then
    template=$AUTOBAHN_SERVER_CMD
  else
    cargo build --release -q -p switchboard-cli --bin switchboard
    # 9.* needs 16 MiB messages and 65,536 fragments per message: if the server's
    # default limits are lower, add the flags that raise them here.
    template="$(printf '%q' "$target/release/switchboard") serve --mode echo --listen 127.0.0.1:{port}"
    [ "$mode" = server-loop ] && template+=" --event-loop"
  fi
else
  if [ -n "${AUTOBAHN_CLIENT_CMD:-}" ]; then
    # bash -c 'CMD "$@"' puts the URL that autobahn-run appends at the end of CMD
    client=(bash -c "$AUTOBAHN_CLIENT_CMD \"\$@\"" autobahn-client)
  else
    cargo build --release -q -p switchboard --example autobahn_client
    client=("$target/release/examples/autobahn_client")
  fi
fi

# --- run ---------------------------------------------------------------------------
# autobahn-run runs in the background so that INT/TERM reach our trap (e2e/lib.sh), which
# stops it by PID; it then stops what it started itself (wstest, the server or client) by PID.
if [ "$mode" != client ] && [ "$mode" != client-h2 ]; then
  # A port nobody holds now; autobahn-run checks it is still free before starting.
  port=$(free_port)
  server_cmd=${template//\{port\}/$port}
  echo "run.sh: server under test: $server_cmd"
  start - "$here/autobahn-run" server "ws://127.0.0.1:$port" -o "$outdir" --cases "$cases" \
    "${extra[@]}" --start "$server_cmd"
else
  start - "$here/autobahn-run" client -o "$outdir" --cases "$cases" "${extra[@]}" -- "${client[@]}"
fi
rc=0
reap "$started" || rc=$?

case $rc in
  0 | 1) ;;  # report written: all passed / some case failed
  *) echo "run.sh: $mode: harness error (autobahn-run exit $rc); see $outdir/wstest.log" >&2
     exit 2 ;;
esac

# --- diff against the expected results -------------------------------------------------
rc=0
python3 "$here/compare.py" "$outdir" "$expected" ${update:+"$update"} || rc=$?
case $rc in
  0) echo "run.sh: $mode: OK (no regression against ${expected#"$PWD"/})" ;;
  1) echo "run.sh: $mode: REGRESSION against ${expected#"$PWD"/}" >&2 ;;
  *) echo "run.sh: $mode: could not compare (compare.py exit $rc)" >&2
     [ -e "$expected" ] || echo "run.sh: to record the expected results: $0 $mode --update" >&2 ;;
esac
exit "$rc"
