#!/usr/bin/env bash
# e2e/browser/run.sh: the web pages in Debian's Chromium (Playwright), against the release
# binary: the chat (chat.test.mjs), its WebSockets over HTTP/2 (h2.test.mjs), and the admin
# dashboard (admin.test.mjs; on three nodes sharing a redis-server, admin-cluster.test.mjs).
# Installs what it needs (chromium, the npm packages) when missing; expects
# target/release/switchboard to be built (scripts/test.sh does) and redis-server installed.
#
#   run.sh [TEST.mjs..]    these tests only (default: all four)
#   UPDATE_SCREENSHOTS=1   write docs/chat.png, docs/chat-phone.png, docs/admin.png and
#                          docs/admin-phone.png (else target/e2e/)
#   SERVE_FLAGS            more flags for the chat test's server (e.g. --event-loop)
#   CHROMIUM, SWITCHBOARD_BIN   see chat.test.mjs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
fi
# Reinstall only when the lock file changed since the last install (a copy marks it).
if ! cmp -s package-lock.json node_modules/.installed-from-lock 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-from-lock
fi
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(chat.test.mjs h2.test.mjs admin.test.mjs admin-cluster.test.mjs)
exec node --test --test-timeout=180000 "${tests[@]}"
