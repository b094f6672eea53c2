#!/usr/bin/env bash
# netloom's main job, as far as it goes today: a tour of networks,
# addresses and sandboxes. The address part uses a throwaway state
# directory; the kernel part runs inside a throwaway network and mount
# namespace. Nothing on the machine changes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p netloom
bin=$PWD/target/release/netloom
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
export NETLOOM_STATE_DIR=$state

run() { printf '\n$ %s\n' "$*"; "$@" || true; }
netloom() { "$bin" "$@"; }

echo "== addresses (driver null: nothing in the kernel)"
run netloom network create web --driver null --subnet 10.88.0.0/24 --subnet fd00:88::/64 --aux-address router=10.88.0.2
run netloom ipam allocate web --owner c1
run netloom ipam allocate web --owner c2 --ip 10.88.0.50
run netloom --json ipam allocate web --owner c3
run netloom ipam allocate web --owner c4 --ip 10.88.0.50
run netloom network create db --driver null --subnet 10.88.0.0/16
run netloom network create routed --driver null --mode pooled --subnet 10.90.0.0/28
run netloom --json ipam allocate routed --owner r1
run netloom ipam ls web
run netloom network inspect web
run netloom ipam release web --owner c1
run netloom network ls
run netloom check

if [ "$(id -u)" != 0 ]; then
    echo
    echo "== sandboxes: skipped (run as root to see connect, publish and run in a throwaway namespace)"
    exit 0
fi
command -v nft >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nftables iproute2 iputils-ping >/dev/null; }
echo
echo "== sandboxes (root; inside a throwaway network and mount namespace)"
NETLOOM_BIN=$bin unshare --net --mount --propagation private bash -euo pipefail -c '
    mount -t tmpfs tmpfs /run
    ip link set lo up
    export NETLOOM_STATE_DIR=/run/netloom-tour
    run() { printf "\n\$ %s\n" "$*"; "$@" || true; }
    netloom() { "$NETLOOM_BIN" "$@"; }
    run netloom network create app --subnet 10.89.0.0/24 --subnet fd00:89::/64
    run netloom sandbox create api
    run netloom sandbox create web
    run netloom connect app api --publish 8080:80
    run netloom connect app web
    run netloom exec web -- ping -c1 -W1 10.89.0.2
    run netloom exec web -- ping -c1 -W1 fd00:89::2
    run netloom run --network app -- ip -br addr show dev eth0
    run netloom endpoint ls
    run netloom network rm app
    run netloom network rm app --force
    run netloom check
'
