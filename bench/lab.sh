#!/usr/bin/env bash
# Lab benchmark: time to bring labs up and take them down, and to apply
# partitions, in a throwaway host. Not part of the test suite.
#
#   bash bench/lab.sh [-r RUNS] [--sizes "10 100 500"] [--many LABS] [--no-build]
#
#   -r RUNS / env RUNS     repetitions per scenario, at least (default 5; labs of
#                          fewer than 100 nodes repeat until 100 nodes came up);
#                          medians are printed
#   --sizes LIST           node counts of the single-lab scenarios (default "10 100 500")
#   --many LABS            labs of 3 nodes brought up (and down) at once (default 200; 0 skips)
#   --no-build             use the binary scripts/build-release.sh last built
#                          as it is (otherwise it builds it first)
#   NETLOOM_BIN=PATH       use this netloom binary instead of building one
#
# Every run happens in a fresh throwaway host: the script re-execs itself
# under `unshare --net --mount --propagation private` with a fresh tmpfs on
# /run and a temporary state directory (its database created before any
# timing: that happens once per machine); the machine's own network,
# firewall and /run/netns are never touched. Targets: up <= 3 ms per node, down <= 2
# ms per node. "down" is the command's time (until the lab's namespaces are
# released); "reaped" is until the kernel has freed the last of them, which
# it does in the background and cannot be hurried (each bridge costs an
# RCU grace period under the RTNL lock).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

# Clocks read by the shell itself (no process, no subshell), in µs.
start_clock() { T0=${EPOCHREALTIME/./}; }
lap() { LAP=$((${EPOCHREALTIME/./} - T0)); }

# A lab file with N nodes named node1..nodeN.
lab_file() {
    local name=$1 n=$2 file=$3 i
    {
        echo "name = \"$name\""
        for ((i = 1; i <= n; i++)); do printf '[[node]]\nname = "node%d"\n' "$i"; done
    } >"$file"
}

# ------------------------------------------------------------ inside a throwaway host
if [ "${1:-}" = "--host" ]; then
    scenario=$2 n=$3 out=$4
    mount -t tmpfs -o mode=0755 netloom-bench /run
    ip link set lo up
    links=$(ip -o link | wc -l)
    me=$(readlink /proc/self/ns/net)
    if [ "$links" != 1 ] || [ "$me" = "$BENCH_OUTER_NETNS" ] || [ -n "$(ls -A /run)" ]; then
        echo "refusing to run: not a fresh throwaway host (links=$links, netns=$me)" >&2
        exit 3
    fi
    state=$(mktemp -d /tmp/netloom-lab-bench.XXXXXX)
    trap 'rm -rf "$state"' EXIT
    export NETLOOM_STATE_DIR=$state
    # Room for 500 nodes: a /20 node subnet in every lab.
    plan=(--lab-nodes 172.18.0.0/20 --lab-bridge 172.18.15.254)
    nl() { "$NETLOOM_BIN" "$@"; }
    # The state database is created by the first netloom command on a
    # machine, once; not part of bringing a lab up, so not timed. The
    # first lab still makes the shared gateway, and that is timed.
    nl lab ls >/dev/null
    # `lab down` returns once the lab's namespaces are released; the kernel
    # reaps them (and their links) after. The host's end of the gateway
    # link goes with the gateway namespace, released by the last lab.
    wait_reaped() { while ip link show nlgw >/dev/null 2>&1; do sleep 0.005; done; }
    case $scenario in
    one)
        lab_file big "$n" "$state/big.toml"
        start_clock; nl lab up "$state/big.toml" "${plan[@]}" >/dev/null; lap; up=$LAP
        half=$((n / 2)) a= b=
        for ((i = 1; i <= n; i++)); do
            if ((i <= half)); then a+=${a:+,}node$i; else b+=${b:+,}node$i; fi
        done
        start_clock; nl partition big disjoint "$a" "$b" >/dev/null; lap; split=$LAP
        start_clock; nl partition big isolate node1 >/dev/null; lap; isolate=$LAP
        start_clock; nl partition big heal >/dev/null; lap; heal=$LAP
        start_clock; nl lab down big >/dev/null; lap; down=$LAP
        wait_reaped; lap; reaped=$LAP
        echo "$up $down $split $isolate $heal $reaped" >"$out"
        ;;
    many)
        for ((l = 1; l <= n; l++)); do lab_file "l$l" 3 "$state/l$l.toml"; done
        start_clock
        pids=()
        for ((l = 1; l <= n; l++)); do nl lab up "$state/l$l.toml" "${plan[@]}" >/dev/null & pids+=($!); done
        fail=0
        for p in "${pids[@]}"; do wait "$p" || fail=1; done
        lap; up=$LAP
        [ "$fail" = 0 ] || { echo "a lab up failed" >&2; exit 1; }
        start_clock
        pids=()
        for ((l = 1; l <= n; l++)); do nl lab down "l$l" >/dev/null & pids+=($!); done
        for p in "${pids[@]}"; do wait "$p" || fail=1; done
        lap; down=$LAP
        [ "$fail" = 0 ] || { echo "a lab down failed" >&2; exit 1; }
        wait_reaped; lap; reaped=$LAP
        echo "$up $down $reaped" >"$out"
        ;;
    esac
    exit 0
fi

# ------------------------------------------------------------ on the machine
RUNS=${RUNS:-5} SIZES="10 100 500" MANY=200 BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
        -r | --runs) RUNS=$2; shift 2 ;;
        --sizes) SIZES=$2; shift 2 ;;
        --many) MANY=$2; shift 2 ;;
        --no-build) BUILD=; shift ;;
        -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then echo "run as root (it makes throwaway network namespaces)" >&2; exit 2; fi
for cmd in unshare ip nft python3; do
    command -v "$cmd" >/dev/null || { echo "missing $cmd (apt-get install util-linux iproute2 nftables python3)" >&2; exit 2; }
done
if [ -z "${NETLOOM_BIN:-}" ]; then
    if [ -n "$BUILD" ]; then
        NETLOOM_BIN=$(bash "$ROOT/scripts/build-release.sh")
    else
        NETLOOM_BIN=$(bash "$ROOT/scripts/build-release.sh" --print-path)
    fi
fi
[ -x "$NETLOOM_BIN" ] || { echo "no netloom binary at $NETLOOM_BIN" >&2; exit 2; }
export NETLOOM_BIN BENCH_OUTER_NETNS=$(readlink /proc/self/ns/net)

results=$(mktemp -d /tmp/netloom-lab-results.XXXXXX)
trap 'rm -rf "$results"' EXIT

NETNS_BASE=$(bench_netns_base)

run_host() { # scenario n out
    # The kernel tears a run's namespaces down in the background, holding
    # the locks the next run needs: wait until it is done, so each run
    # measures its own work.
    bench_settle_netns "$NETNS_BASE"
    unshare --net --mount --propagation private "$0" --host "$@"
}

for n in $SIZES; do
    # A small lab takes a few tens of ms, where one slow run moves a median
    # of five: small labs repeat until 100 nodes have come up in all.
    runs=$(((100 + n - 1) / n)); ((runs >= RUNS)) || runs=$RUNS
    for ((r = 1; r <= runs; r++)); do
        run_host one "$n" "$results/one-$n-$r" || { echo "run $r with $n nodes failed" >&2; exit 1; }
    done
done
if [ "$MANY" -gt 0 ]; then
    for ((r = 1; r <= RUNS; r++)); do
        run_host many "$MANY" "$results/many-$MANY-$r" || { echo "run $r with $MANY labs failed" >&2; exit 1; }
    done
fi

python3 "$HERE/lab/report.py" "$results" "$MANY" $SIZES
