#!/usr/bin/env bash
# e2e/netfault/full.sh: the full-size network-fault runs whose figures docs/RELIABILITY.md
# gives (the test script runs the short ones: netfault.py with its defaults).
#
#   e2e/netfault/full.sh [OUT_DIR]
#
# Needs root and the release binary (cargo build --release -p switchboard-cli); installs
# nftables and iptables when missing. Writes each run's figures as JSON into OUT_DIR
# (default: a new temporary directory) and prints them. Takes about 10 minutes.
#
#   FAULT_SECONDS  how long the loss and the Redis cut last (default 120)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."  # repo root

out=${1:-$(mktemp -d -t switchboard-netfault-full.XXXXXX)}
mkdir -p "$out"
seconds=${FAULT_SECONDS:-120}
pkgs=()
command -v nft >/dev/null 2>&1 || pkgs+=(nftables)
command -v iptables >/dev/null 2>&1 || pkgs+=(iptables)
if [ ${#pkgs[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi

run() {  # run NAME ARG..
  local name=$1
  shift
  echo "==> $name: netfault.py $*"
  python3 e2e/netfault/netfault.py --json "$out/$name.json" --logs "$out/$name-logs" "$@"
}

# 1 and 3 at full size: longer faults, more clients, a faster publisher in 3
run loss5 --only 1 --fault-seconds "$seconds" --publishers 4 --subscribers 10
run loss15 --only 1 --fault-seconds "$seconds" --publishers 4 --subscribers 10 --loss 15
run silent --only 2 --idle 5 --pong 5
run redis-cut --only 3 --fault-seconds "$seconds" --subscribers 10 --rate 50
echo "figures in $out"
