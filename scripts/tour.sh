#!/usr/bin/env bash
# netloom's main job, as far as it goes today: a tour of networks and
# address management in a throwaway state directory. It touches nothing
# on the machine but that directory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p netloom
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
export NETLOOM_STATE_DIR=$state

run() { printf '\n$ %s\n' "$*"; "$@" || true; }
netloom() { ./target/release/netloom "$@"; }

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
