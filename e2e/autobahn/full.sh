#!/usr/bin/env bash
# e2e/autobahn/full.sh [server|server-loop|client|both|server-h2|client-h2|h2|all]
#
# The complete Autobahn|Testsuite, every case of sections 1-7, 9, 10, 12 and 13 (517),
# against switchboard as server and as client, with permessage-deflate; over HTTP/2 with
# server-h2 and client-h2 (through examples/h2_bridge, as `run.sh server-h2|client-h2`);
# server-loop is the server with its connections on the event loop (`serve --event-loop`).
# both = server client, h2 = server-h2 client-h2, all = the five. Sections 12 and
# 13 send 1000 messages per case in lock-step: about 17 minutes per side, which is why
# scripts/test.sh runs only the subset of run.sh. Run this before a release, or after a
# change to compression, and commit the summary it writes.
#
# Reports go to target/autobahn/full-MODE; the summary of the sides run is written to
# e2e/autobahn/FULL-RESULTS.md, which keeps the sections of the sides not run. Exit status: 0 every case passed, 1 some case failed,
# 2 harness error.
#
# Environment: WSTEST_HOME (default /opt/wstest), CARGO_TARGET_DIR (default target).
set -euo pipefail

sides=${1:-both}
case $sides in
  server | server-loop | client | server-h2 | client-h2) ;;
  both) sides="server client" ;;
  h2) sides="server-h2 client-h2" ;;
  all) sides="server server-loop client server-h2 client-h2" ;;
  *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib.sh"
cd "$here/../.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
# The commit under test, as built now (marked when the work tree has changes).
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
cargo build --release -q -p switchboard-cli --bin switchboard
cargo build --release -q -p switchboard --example autobahn_client --example h2_bridge

temp_dir logs
status=0
for side in $sides; do
  outdir=$target/autobahn/full-$side
  log=$logs/$side.log
  serve_pid=
  if [ "$side" = server ] || [ "$side" = server-loop ]; then
    port=$(free_port)
    server_cmd="$(printf '%q' "$target/release/switchboard") serve --mode echo --listen 127.0.0.1:$port"
    [ "$side" = server ] || server_cmd+=" --event-loop"
    start "$log" "$here/autobahn-run" server "ws://127.0.0.1:$port" -o "$outdir" --timeout 3600 \
      --start "$server_cmd"
  elif [ "$side" = server-h2 ]; then
    tls_port=$(free_port)
    start "$logs/serve.log" "$target/release/switchboard" serve --mode echo \
      --listen "127.0.0.1:$tls_port" --tls-self-signed
    serve_pid=$started
    wait_port "$tls_port" "$serve_pid"
    port=$(free_port)
    server_cmd="$(printf '%q' "$target/release/examples/h2_bridge") to-h2 127.0.0.1:$port wss://127.0.0.1:$tls_port"
    start "$log" "$here/autobahn-run" server "ws://127.0.0.1:$port" -o "$outdir" --timeout 3600 \
      --start "$server_cmd"
  elif [ "$side" = client-h2 ]; then
    start "$log" "$here/autobahn-run" client -o "$outdir" --timeout 3600 \
      -- "$here/h2-client.sh" "$target/release/examples/h2_bridge" \
      "$target/release/examples/autobahn_client"
  else
    start "$log" "$here/autobahn-run" client -o "$outdir" --timeout 3600 \
      -- "$target/release/examples/autobahn_client"
  fi
  rc=0
  reap "$started" || rc=$?
  [ -z "$serve_pid" ] || stop "$serve_pid"
  # The summary: from the per-section table to the "N passed, M failed" line.
  summary=$(sed -n '/^agent /,/ passed, .* failed$/p' "$log")
  echo "== $side"
  echo "$summary"
  case $rc in
    0) ;;
    1) status=1 ;;
    *) echo "full.sh: $side: harness error (autobahn-run exit $rc):" >&2
       tail -20 "$log" >&2
       exit 2 ;;
  esac
  printf '%s\n' "### switchboard as $side" "" "$(date -u +%Y-%m-%d), commit $commit." "" \
    '```' "$summary" '```' "" >"$logs/section-$side.md"
done

# The sections of this run replace those of the same sides; the others stay.
python3 - "$here/FULL-RESULTS.md" "$logs" <<'EOF'
import os, re, sys
path, logs = sys.argv[1], sys.argv[2]
order = ["server", "server-loop", "client", "server-h2", "client-h2"]
sections = {}
if os.path.exists(path):
    text = open(path, encoding="utf-8").read()
    for m in re.finditer(r"^### switchboard as (\S+)\n.*?(?=^### |\Z)", text, re.M | re.S):
        sections[m.group(1)] = m.group(0).rstrip("\n") + "\n"
for side in order:
    new = os.path.join(logs, f"section-{side}.md")
    if os.path.exists(new):
        sections[side] = open(new, encoding="utf-8").read().rstrip("\n") + "\n"
head = """# Autobahn|Testsuite, complete run

Written by `e2e/autobahn/full.sh`. Every case of sections 1-7, 9, 10, 12 and 13,
permessage-deflate included: `switchboard serve --mode echo` with its defaults as the server,
`examples/autobahn_client.rs` (offers deflate, compresses every echo) as the client. The `-h2`
sides run the same over HTTP/2 (RFC 8441) through `examples/h2_bridge.rs`, which copies the
bytes after each end's handshake as they are: `server-h2` is Autobahn's client to the bridge
over HTTP/1.1, then one HTTP/2 connection to `serve --tls-self-signed`; `client-h2` is
`autobahn_client --http2`, every case a stream of one HTTP/2 connection to the bridge, then
HTTP/1.1 to Autobahn's server. `server-loop` is the server with `--event-loop`: its
connections served by callbacks from the event loop. Passed = OK, NON-STRICT or INFORMATIONAL.
"""
body = "\n".join(sections[s] for s in order if s in sections)
open(path, "w", encoding="utf-8").write(head + "\n" + body)
EOF
echo "full.sh: summary written to ${here#"$PWD"/}/FULL-RESULTS.md"
exit "$status"
