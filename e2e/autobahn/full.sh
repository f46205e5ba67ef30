#!/usr/bin/env bash
# e2e/autobahn/full.sh [server|client|both]
#
# The complete Autobahn|Testsuite, every case of sections 1-7, 9, 10, 12 and 13 (517),
# against switchboard as server and as client, with permessage-deflate. Sections 12 and
# 13 send 1000 messages per case in lock-step: about 17 minutes per side, which is why
# scripts/test.sh runs only the subset of run.sh. Run this before a release, or after a
# change to compression, and commit the summary it writes.
#
# Reports go to target/autobahn/full-MODE; the summary of the sides run is written to
# e2e/autobahn/FULL-RESULTS.md. Exit status: 0 every case passed, 1 some case failed,
# 2 harness error.
#
# Environment: WSTEST_HOME (default /opt/wstest), CARGO_TARGET_DIR (default target).
set -euo pipefail

sides=${1:-both}
case $sides in
  server | client) ;;
  both) sides="server client" ;;
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
cargo build --release -q -p switchboard --example autobahn_client

temp_dir logs
status=0
summaries=()
for side in $sides; do
  outdir=$target/autobahn/full-$side
  log=$logs/$side.log
  if [ "$side" = server ]; then
    port=$(free_port)
    server_cmd="$(printf '%q' "$target/release/switchboard") serve --mode echo --listen 127.0.0.1:$port"
    start "$log" "$here/autobahn-run" server "ws://127.0.0.1:$port" -o "$outdir" --timeout 3600 \
      --start "$server_cmd"
  else
    start "$log" "$here/autobahn-run" client -o "$outdir" --timeout 3600 \
      -- "$target/release/examples/autobahn_client"
  fi
  rc=0
  reap "$started" || rc=$?
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
  summaries+=("### switchboard as $side" "" '```' "$summary" '```' "")
done

{
  echo "# Autobahn|Testsuite, complete run"
  echo
  echo "Written by \`e2e/autobahn/full.sh\` on $(date -u +%Y-%m-%d), commit $commit."
  echo
  echo "Every case of sections 1-7, 9, 10, 12 and 13, permessage-deflate included:"
  echo "\`switchboard serve --mode echo\` with its defaults as the server,"
  echo "\`examples/autobahn_client.rs\` (offers deflate, compresses every echo) as the client."
  echo "Passed = OK, NON-STRICT or INFORMATIONAL."
  echo
  printf '%s\n' "${summaries[@]}"
} >"$here/FULL-RESULTS.md"
echo "full.sh: summary written to ${here#"$PWD"/}/FULL-RESULTS.md"
exit "$status"
