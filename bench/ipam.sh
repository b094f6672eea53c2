#!/usr/bin/env bash
# IPAM benchmark: netloom in-process and as a process, beside the CNI
# reference IPAM plugin host-local. Not part of the test suite.
#   bash bench/ipam.sh [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/lib/cni/host-local ]; then
    echo "installing the peer (containernetworking-plugins) ..."
    (apt-get update -qq && apt-get install -y -qq containernetworking-plugins) >/dev/null 2>&1 ||
        echo "could not install containernetworking-plugins; the peer column will be missing"
fi
cargo build --release -q -p netloom-bench
exec "${CARGO_TARGET_DIR:-./target}/release/bench-ipam" "$(bash scripts/build-release.sh)" "$@"
