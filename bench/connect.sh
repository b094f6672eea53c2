#!/usr/bin/env bash
# Connect/disconnect benchmark: netloom beside netavark (setup/teardown), the
# CNI bridge + host-local (+ portmap) chain and the kernel floor (ip -batch),
# in the same run, each on a fresh bridge in throwaway hosts. Not part of the
# test suite.
#
#   bash bench/connect.sh [-n N] [--json FILE] [--scale M] [--warmup W] [--no-install]
#
#   -n N / env N        connect+disconnect pairs per tool and scenario (default 200)
#   --scale M / SCALE   endpoints on one netloom network in the scale run (default 1000; 0 skips it)
#   --warmup W          untimed rounds first (default 5)
#   --json FILE         also write the JSON object to FILE
#   --no-install        do not apt-get install missing peers
#   NETLOOM_BIN=PATH    use this netloom binary instead of building one
#   KEEP=1              keep the per-scenario result files (path printed)
#
# Scenarios: plain (connect/disconnect), publish (one published port), scale
# (netloom: M endpoints on one network, two published ports each, connects
# 1-100 vs the last 100) and scale-floor (the same with the kernel floor). Each
# scenario runs in its own throwaway host: this script re-execs itself under
# `unshare --net --mount --propagation private` with a fresh tmpfs on /run; the
# machine's own network, firewall and /run/netns are never touched.
#
# Tools run interleaved, in a fresh order each round. After each tool's
# disconnect the bench waits, untimed, until what the tool left behind is done
# (the processes it left have exited, its links are gone, the RTNL and
# nf_tables locks are free): that wait is printed as "settle", and no tool is
# timed while another one's leftovers hold the kernel's locks.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

# ------------------------------------------------------------ inside a throwaway host
if [ "${1:-}" = "--host" ]; then
    scenario=$2 out=$3
    bench_host_setup /var/lib/cni /var/lib/containers /var/lib/netloom /run/netavark
    exec "$BENCH_PY" "$HERE/connect/bench.py" worker "$scenario" "$out"
fi

# ------------------------------------------------------------ on the machine
N=${N:-200} SCALE=${SCALE:-1000} WARMUP=${WARMUP:-5} JSON= INSTALL=1
while [ $# -gt 0 ]; do
    case $1 in
        -n | --n) N=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --json) JSON=$2; shift 2 ;;
        --no-install) INSTALL=; shift ;;
        -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then echo "run as root (it makes throwaway network namespaces)" >&2; exit 2; fi
case $JSON in "" | /*) ;; *) JSON=$PWD/$JSON ;; esac

bench_need_tools "util-linux iproute2 nftables iptables iputils-ping python3" \
    unshare ip nft iptables-save python3 ping timeout
BENCH_PY=$(python3 -c 'import sys; print(sys.executable)')

find_netavark() {
    for p in /usr/lib/podman/netavark /usr/libexec/podman/netavark "$(command -v netavark || true)"; do
        if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; return 0; fi
    done
    return 1
}
NETAVARK= NETAVARK_WHY= CNI= CNI_WHY=
if [ -n "$INSTALL" ] && { ! find_netavark >/dev/null || [ ! -x /usr/lib/cni/bridge ]; }; then
    echo "installing the peers (netavark, containernetworking-plugins) ..." >&2
    if ! log=$( (apt-get install -y -qq netavark containernetworking-plugins ||
        { apt-get update -qq && apt-get install -y -qq netavark containernetworking-plugins; }) 2>&1); then
        echo "could not install the peers; going on without the missing ones:" >&2
        echo "$log" | tail -5 >&2
        NETAVARK_WHY="apt-get install netavark failed: $(echo "$log" | grep -m1 -E '^E:' || echo "$log" | tail -1)"
        CNI_WHY="apt-get install containernetworking-plugins failed: $(echo "$log" | grep -m1 -E '^E:' || echo "$log" | tail -1)"
    fi
fi
if NETAVARK=$(find_netavark); then NETAVARK_WHY=; else NETAVARK=; NETAVARK_WHY=${NETAVARK_WHY:-"netavark is not installed"}; fi
for p in bridge host-local portmap; do
    if [ ! -x "/usr/lib/cni/$p" ]; then CNI_WHY=${CNI_WHY:-"/usr/lib/cni/$p is missing"}; fi
done
if [ -z "$CNI_WHY" ]; then CNI=/usr/lib/cni; fi

bench_netloom_bin

OUT=$(mktemp -d /tmp/netloom-bench-connect.XXXXXX)
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$OUT"' EXIT; else echo "keeping $OUT" >&2; fi

BENCH_CFG=$("$BENCH_PY" - "$N" "$WARMUP" "$SCALE" "$NL" "$NETAVARK" "$NETAVARK_WHY" "$CNI" "$CNI_WHY" <<'EOF'
import json, sys
n, warm, scale, nl, na, na_why, cni, cni_why = sys.argv[1:]
print(json.dumps({"n": int(n), "warmup": int(warm), "scale": int(scale), "netloom": nl,
                  "netavark": na or None, "netavark_why": na_why, "cni": cni or None, "cni_why": cni_why}))
EOF
)
export BENCH_CFG BENCH_PY BENCH_OUTER_NETNS
BENCH_OUTER_NETNS=$(readlink /proc/self/ns/net)

"$BENCH_PY" - "$OUT/meta.json" <<EOF
import json, os, platform, sys
json.dump({"n": $N, "warmup": $WARMUP, "scale_endpoints": $SCALE, "cpus": os.cpu_count(),
           "kernel": platform.release(),
           "netloom": {"path": "$NL", "version": "$(ver "$NL" --version)",
                       "commit": "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"},
           "netavark": {"path": "$NETAVARK" or None, "version": "$( [ -n "$NETAVARK" ] && ver "$NETAVARK" --version)",
                        "why_missing": "$NETAVARK_WHY" or None},
           "cni": {"path": "$CNI" or None,
                   "package": "$(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null || true)",
                   "why_missing": "$CNI_WHY" or None},
           "iptables": "$(ver iptables --version)", "iproute2": "$(ver ip -V)"},
          open(sys.argv[1], "w"), indent=1)
EOF

# One throwaway host per scenario; each one stops by itself (time limit).
run_host() { # scenario limit_seconds
    echo "== $1 (limit $2 s)" >&2
    if ! timeout --kill-after=15 "$2" unshare --net --mount --propagation private -- \
        bash "$0" --host "$1" "$OUT/$1.json" 2> >(tee "$OUT/$1.err" >&2); then
        echo "scenario $1 ended with an error (see above); going on" >&2
    fi
    # Let the kernel free the previous host's namespaces before the next one.
    bench_settle_netns "$NETNS_BASE"
}
NETNS_BASE=$(bench_netns_base)
start=$(date +%s)
run_host plain 360
run_host publish 360
if [ "$SCALE" -gt 0 ]; then run_host scale 360; run_host scale-floor 300; fi
echo "total $(($(date +%s) - start)) s" >&2

"$BENCH_PY" "$HERE/connect/bench.py" report "$OUT" ${JSON:+"$JSON"}
