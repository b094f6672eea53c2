#!/usr/bin/env bash
# netloom's main job on a fresh Debian machine with Rust: build netloom and run
# `netloom demo` — a five-node lab whose links are cut and healed while you
# watch. The demo makes its own throwaway network and mount namespace, so
# nothing on the machine changes. Needs root (namespaces, netlink); runs
# itself under sudo when started as another user and sudo exists.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        cargo build --release --quiet -p netloom
        exec sudo "$PWD/target/release/netloom" demo "$@"
    fi
    echo "scripts/demo.sh: the demo makes network namespaces and needs root; run it as root or install sudo" >&2
    exit 1
fi

need_pkgs=()
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need_pkgs+=(nftables)
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)
if [ ${#need_pkgs[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

cargo build --release --quiet -p netloom
exec "$PWD/target/release/netloom" demo "$@"
