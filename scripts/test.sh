#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test (unit, property,
# CLI, concurrency, and the kernel tests, which run inside throwaway network
# and mount namespaces and so need root).
# Works on a fresh Debian machine with only Rust installed: it installs
# what it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need_pkgs+=(nftables)
command -v ping >/dev/null 2>&1 || need_pkgs+=(iputils-ping)
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)
# objdump: a test reads the bare entry's machine code (tests/bare.rs).
command -v objdump >/dev/null 2>&1 || need_pkgs+=(binutils)
# The reference CNI plugins: the CNI chaining tests run netloom beside them.
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${need_pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    else
        echo "missing ${need_pkgs[*]}; kernel tests will print SKIP lines (run as root to install them)"
    fi
fi
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace
