#!/usr/bin/env bash
# scripts/test.sh: run every test of the workspace, stopping at the first failure.
# This is what CI runs (.ci/run). Works from any directory, on a fresh Debian machine
# with the Rust toolchain, as root: it installs what it needs (idempotent, fast when
# already there).
#
# Steps, in the order they run (numbered so in the output and the summary):
#    1 prerequisites: rustfmt, clippy, make and cc, redis-server, proxies (tinyproxy, dante,
#      microsocks), tmux, python3 and pip, curl
#    2 install Autobahn (wstest)                3 install node, npm, chromium (interop)
#    4 cargo fmt --check     5 cargo clippy (also with the otel feature)
#    6 no import circles (scripts/import-circles.py)
#    7 cargo test (also the otel feature's export, and the hub's tests with its clients
#      on the event loop)                      8 cargo doc
#    9 cargo build --release (bins, examples)  10 bench smoke (e2e/bench-smoke.sh)
#   11 Autobahn, switchboard as server         12 the same on the event loop (--event-loop)
#   13 Autobahn, switchboard as client
#   14 Autobahn over HTTP/2, as server         15 Autobahn over HTTP/2, as client
#      (examples/h2_bridge between Autobahn's HTTP/1.1 and switchboard's HTTP/2)
#   16 interop: deflate with ws and Chromium   17 browser: the chat page and the admin
#      dashboard in Chromium
#   18 JS client: bad input, tokens, 200 cuts on one node and on 2 nodes on Redis
#   19 the same (100 cuts) and the chat page in Chromium, with the hub on the event loop
#      (serve --event-loop)
#   20 Pusher: pusher-js (Node, Chromium), Laravel Echo (Chromium), the Node and Python pusher
#      server libraries against --pusher-app, on one node and on 3 nodes on Redis
#   21 hostile clients                         22 the same against the event loop
#   23 cluster on Redis (one Redis, then 2 shards)
#   24 network faults in namespaces (loss, delay and reordering, a silent client, a node
#      cut off from Redis; installs nftables and iptables)
#   25 reconnect storm: 2,000 hub clients recover across a restart under publish load
#   26 the same with the hub on the event loop
#   27 abuse: a flooder, a connection flood, subscription spam, each stopped at its limit
#   28 the same with the hub on the event loop
#   29 backend: proxies, webhooks, server API  30 10,000 connections
#   31 soak                                    32 fuzz smoke
#
#   SKIP_E2E=1   quick local run: skip the Autobahn install and conformance runs, the
#                interop e2e with Node's ws and Chromium, the browser test, the JS client's
#                tests, the Pusher test, the hostile clients, the cluster, the network
#                faults, the storm, the abuse limits, the backend, the 10,000 connections,
#                the soak
#                (steps 2, 3, 11-31)
#   AUTOBAHN_*   passed on to e2e/autobahn/run.sh (see its header), e.g.
#                AUTOBAHN_CASES='1.*,2.*' for a short conformance run
#   WSTEST_HOME  where Autobahn's wstest lives (default /opt/wstest)
#   FUZZ_SECONDS seconds per fuzz target in the smoke run (step 32; default 5; 0 skips it)
#   CUTS         cuts per run of the JS client's cut test (step 18; default 200; 100 in 19)
#   SOAK_SECONDS length of the hub soak run (default 60)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # repo root

skip_e2e=
case ${SKIP_E2E:-} in "" | 0) ;; *) skip_e2e=1 ;; esac
wstest_home=${WSTEST_HOME:-/opt/wstest}

# --- step bookkeeping: a header per step, a summary at the end (also on failure) ----
# Steps number themselves in the order they run or are skipped.
summary=()
number=0
current=
started=$SECONDS
step() {  # step TITLE CMD [ARG..]
  local title=$1 t=$SECONDS
  shift
  number=$((number + 1))
  current=$(printf '%2d. %s' "$number" "$title")
  printf '\n==> %s\n' "$number. $title"
  "$@"
  summary+=("$(printf '  %-58s ok   %4ds' "$current" $((SECONDS - t)))")
  current=
}
skip() {  # skip TITLE WHY
  number=$((number + 1))
  summary+=("$(printf '  %2d. %-54s skipped (%s)' "$number" "$1" "$2")")
}
e2e_step() {  # e2e_step TITLE CMD [ARG..]: a step that SKIP_E2E skips
  if [ -z "$skip_e2e" ]; then step "$@"; else skip "$1" SKIP_E2E; fi
}
# shellcheck disable=SC2317  # called by the trap
report() {
  local rc=$?
  [ -n "$current" ] && summary+=("$(printf '  %-58s FAILED (exit %d)' "$current" "$rc")")
  printf '\n==> summary (%ds)\n' $((SECONDS - started))
  [ ${#summary[@]} -eq 0 ] || printf '%s\n' "${summary[@]}"
  if [ "$rc" -eq 0 ]; then echo "all tests passed"; else echo "TESTS FAILED"; fi
}
trap report EXIT

# --- prerequisites that a bare Rust machine may lack (quiet when present) -------------
prereqs() {
  local comps=()
  cargo fmt --version >/dev/null 2>&1 || comps+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || comps+=(clippy)
  [ ${#comps[@]} -eq 0 ] || rustup component add "${comps[@]}"
  # python3 runs autobahn-run and compare.py; its pip bootstraps autobahn-install
  if [ -z "$skip_e2e" ] && ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip
  fi
  # jemalloc, the binary's allocator, builds from its C sources with make and cc
  if ! command -v make >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make gcc libc6-dev
  fi
  # redis-server: the Redis broker's tests (cargo test) and the cluster e2e start their own;
  # redis-cli (redis-tools) joins the Redis Cluster of tests/redis_cluster.rs
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools
  fi
  # real proxies on loopback for the client's proxy tests (cargo test): an HTTP CONNECT proxy
  # and two SOCKS5 servers (dante for rulesets, microsocks for user/password)
  if ! command -v tinyproxy >/dev/null 2>&1 || ! command -v danted >/dev/null 2>&1 ||
    ! command -v microsocks >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      tinyproxy dante-server microsocks
  fi
  # tmux: the interactive `connect` tests (tests/interactive.rs) type into a terminal it runs
  if ! command -v tmux >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tmux
  fi
  # curl: the backend e2e drives the server API with it, as a shell backend would
  if [ -z "$skip_e2e" ] && ! command -v curl >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl
  fi
}

# the CLI's optional OpenTelemetry export (off by default) is linted and tested too
clippy_all() {
  cargo clippy --workspace --all-targets -- -D warnings &&
    cargo clippy -p switchboard-cli --features otel --all-targets -- -D warnings
}
tests_all() {
  cargo test --workspace && cargo test -p switchboard-cli --features otel --test otel &&
    hub_tests_on_the_event_loop
}
# the hub's integration tests again, each client served from the event loop
# (Hub::serve_on_event_loop; tests/support/serving.rs reads the variable)
hub_tests_on_the_event_loop() {
  SWITCHBOARD_TEST_EVENT_LOOP=1 cargo test -p switchboard-hub --features redis --tests
}

# the JS client's tests (100 cuts) and the chat page in Chromium, against serve --event-loop
js_on_the_event_loop() {
  SERVE_FLAGS=--event-loop CUTS=100 clients/js/test/run.sh &&
    SERVE_FLAGS=--event-loop e2e/browser/run.sh chat.test.mjs
}

install_autobahn() {
  if "$wstest_home/bin/wstest" --help >/dev/null 2>&1; then
    echo "wstest already installed: $wstest_home/bin/wstest"
  else
    e2e/autobahn/autobahn-install
  fi
}

# the network-fault checks make namespaces and nftables rules (as root); nft is Debian's
# nftables, ip is iproute2, iptables reaches the NFQUEUE target where nft has no queue
netfault() {
  local pkgs=()
  command -v nft >/dev/null 2>&1 || pkgs+=(nftables)
  command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
  command -v iptables >/dev/null 2>&1 || pkgs+=(iptables)
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
  fi
  python3 e2e/netfault/netfault.py
}

# node, npm and chromium (Debian packages) and e2e/interop's npm packages, for the interop step
install_interop() {
  local pkgs=()
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  [ -x /usr/bin/chromium ] || pkgs+=(chromium)
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
  fi
  (cd e2e/interop && { npm ls --silent >/dev/null 2>&1 || npm ci --no-audit --no-fund; })
}

step "prerequisites (rustfmt, clippy, make, python3, redis, proxies, curl)" prereqs
e2e_step "install Autobahn (wstest)" install_autobahn
e2e_step "install node, npm, chromium (interop)" install_interop
step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy -D warnings (and the otel feature)" clippy_all
step "no import circles between files of a crate" python3 scripts/import-circles.py
step "cargo test (the otel feature's export, the hub on the event loop)" tests_all
step "cargo doc -D warnings" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
# release binary + examples for e2e (autobahn_client of crate switchboard, storm of
# switchboard-client)
step "cargo build --release (bins, examples)" \
  cargo build --release -p switchboard-cli -p switchboard -p switchboard-client --bins --examples
step "bench smoke (switchboard bench vs serve)" e2e/bench-smoke.sh
e2e_step "Autobahn: switchboard as server" e2e/autobahn/run.sh server
e2e_step "Autobahn: switchboard as server on the event loop" e2e/autobahn/run.sh server-loop
e2e_step "Autobahn: switchboard as client" e2e/autobahn/run.sh client
e2e_step "Autobahn over HTTP/2: switchboard as server (h2_bridge to-h2)" e2e/autobahn/run.sh server-h2
e2e_step "Autobahn over HTTP/2: switchboard as client (h2_bridge from-h2)" e2e/autobahn/run.sh client-h2
e2e_step "interop: deflate with ws and Chromium" e2e/interop/run.sh
# the chat page and the admin dashboard in Chromium (installs chromium and the npm packages
# when missing)
e2e_step "browser: chat page and admin dashboard in Chromium" e2e/browser/run.sh
# clients/js against the release binary (installs its npm packages when missing)
e2e_step "JS client: bad input, tokens, cuts (1 node, 2 on Redis)" clients/js/test/run.sh
e2e_step "JS client and chat page with the hub on the event loop" js_on_the_event_loop
# pusher-js in Node and Chromium, Laravel Echo in Chromium, the pusher server libraries of Node
# and Python, against --pusher-app on one node, then on 3 nodes on Redis (installs chromium,
# redis-server, the npm packages and the Python library when missing)
e2e_step "Pusher: pusher-js, Laravel Echo, the Node and Python server libraries (1 node, 3 on Redis)" e2e/pusher/run.sh
e2e_step "hostile clients against switchboard serve" python3 e2e/hostile/hostile.py
e2e_step "hostile clients against the event loop" python3 e2e/hostile/hostile.py --event-loop
e2e_step "cluster: nodes sharing channels via Redis" python3 e2e/cluster/cluster.py
# loss with delay, a silent client, a node cut off from Redis: ~20 s of fault each
e2e_step "network faults in namespaces (loss, silence, redis cut)" netfault
# a Python backend app as the proxies and webhook target; the server API on 1 node and 3
e2e_step "reconnect storm: 2,000 clients across a restart" python3 e2e/storm/storm.py
e2e_step "reconnect storm with the hub on the event loop" python3 e2e/storm/storm.py --event-loop
e2e_step "abuse: flood, connection flood, subscription spam" \
  python3 e2e/storm/abuse.py --seconds 3
e2e_step "abuse with the hub on the event loop" \
  python3 e2e/storm/abuse.py --seconds 3 --event-loop
e2e_step "backend: proxies, webhooks, server API" python3 e2e/backend/backend.py
e2e_step "10,000 connections on one server" e2e/scale/connections.sh 10000
e2e_step "soak: hub pub/sub with churn (${SOAK_SECONDS:-60}s)" \
  python3 e2e/soak/soak.py --seconds "${SOAK_SECONDS:-60}"
fuzz_seconds=${FUZZ_SECONDS:-5}
if [ "$fuzz_seconds" != 0 ]; then
  step "fuzz smoke (${fuzz_seconds}s per target)" scripts/fuzz.sh "$fuzz_seconds"
else
  skip "fuzz smoke" FUZZ_SECONDS=0
fi
