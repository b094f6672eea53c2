#!/usr/bin/env bash
# CNI ADD/DEL benchmark: netloom as the main CNI plugin beside the reference
# bridge + host-local (+ portmap) chain from containernetworking-plugins, both
# called exactly as a container runtime calls them (CNI_* environment, config
# on stdin, result on stdout), sequentially, in the same run, in throwaway
# hosts. Not part of the test suite.
#
#   bash bench/cni.sh [-n N] [--json FILE] [--warmup W] [--scenario S] [--crowd C] [--no-install]
#
#   -n N / env N        ADD+DEL pairs per tool and scenario (default 200)
#   --warmup W          untimed rounds first (default 5)
#   --scenario S        publish (one published port, the headline), plain, or
#                       both (default both)
#   --crowd C           also run "crowded": publish with C containers already
#                       attached to each tool's network (default 0: not run)
#   --json FILE         also write the JSON object to FILE
#   --no-install        do not apt-get install missing peers
#   NETLOOM_BIN=PATH    use this netloom binary instead of building one
#   KEEP=1              keep the per-scenario result files (path printed)
#
# Each scenario runs in its own throwaway host: this script re-execs itself
# under `unshare --net --mount --propagation private` with a fresh tmpfs on
# /run; the machine's own network, firewall and /run/netns are never touched.
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
    bench_host_setup /var/lib/cni /var/lib/netloom
    exec "$BENCH_PY" "$HERE/cni/bench.py" worker "$scenario" "$out"
fi

# ------------------------------------------------------------ on the machine
N=${N:-200} WARMUP=${WARMUP:-5} JSON= INSTALL=1 SCENARIO=both CROWD=0
while [ $# -gt 0 ]; do
    case $1 in
        -n | --n) N=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --scenario) SCENARIO=$2; shift 2 ;;
        --json) JSON=$2; shift 2 ;;
        --no-install) INSTALL=; shift ;;
        --crowd) CROWD=$2; shift 2 ;;
        -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $SCENARIO in publish | plain | both) ;; *) echo "--scenario must be publish, plain or both" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then echo "run as root (it makes throwaway network namespaces)" >&2; exit 2; fi
case $JSON in "" | /*) ;; *) JSON=$PWD/$JSON ;; esac

bench_need_tools "util-linux iproute2 nftables iptables python3" unshare ip nft iptables python3 timeout
BENCH_PY=$(python3 -c 'import sys; print(sys.executable)')

CNI= CNI_WHY=
have_cni() { for p in bridge host-local portmap; do [ -x "/usr/lib/cni/$p" ] || return 1; done; }
if [ -n "$INSTALL" ] && ! have_cni; then
    echo "installing the reference plugins (containernetworking-plugins) ..." >&2
    if ! log=$( (apt-get install -y -qq containernetworking-plugins ||
        { apt-get update -qq && apt-get install -y -qq containernetworking-plugins; }) 2>&1); then
        echo "could not install containernetworking-plugins; going on without the reference chain:" >&2
        echo "$log" | tail -5 >&2
        CNI_WHY="apt-get install containernetworking-plugins failed: $(echo "$log" | grep -m1 -E '^E:' || echo "$log" | tail -1)"
    fi
fi
if have_cni; then CNI=/usr/lib/cni; else CNI_WHY=${CNI_WHY:-"/usr/lib/cni/{bridge,host-local,portmap} are missing (apt-get install containernetworking-plugins)"}; fi

bench_netloom_bin

OUT=$(mktemp -d /tmp/netloom-bench-cni.XXXXXX)
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$OUT"' EXIT; else echo "keeping $OUT" >&2; fi

BENCH_CFG=$("$BENCH_PY" - "$N" "$WARMUP" "$NL" "$CNI" "$CNI_WHY" "$CROWD" <<'EOF'
import json, sys
n, warm, nl, cni, cni_why, crowd = sys.argv[1:]
print(json.dumps({"n": int(n), "warmup": int(warm), "netloom": nl, "cni": cni or None, "cni_why": cni_why,
                  "crowd": int(crowd)}))
EOF
)
export BENCH_CFG BENCH_PY BENCH_OUTER_NETNS
BENCH_OUTER_NETNS=$(readlink /proc/self/ns/net)

"$BENCH_PY" - "$OUT/meta.json" "$NL" "$(ver "$NL" --version)" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)" "$CNI" \
    "$(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null || true)" "$CNI_WHY" \
    "$N" "$WARMUP" <<'EOF'
import json, os, platform, sys
out, nl, nlver, commit, cni, cnipkg, cniwhy, n, warm = sys.argv[1:]
json.dump({"n": int(n), "warmup": int(warm), "cpus": os.cpu_count(), "kernel": platform.release(),
           "netloom": {"path": nl, "version": nlver, "commit": commit},
           "cni": {"path": cni or None, "package": cnipkg or None, "why_missing": cniwhy or None}},
          open(out, "w"), indent=1)
EOF

run_host() { # scenario limit_seconds
    echo "== $1 (limit $2 s)" >&2
    if ! timeout --kill-after=15 "$2" unshare --net --mount --propagation private -- \
        bash "$0" --host "$1" "$OUT/$1.json"; then
        echo "scenario $1 ended with an error (see above); going on" >&2
    fi
    # Let the kernel free the previous host's namespaces before the next one.
    bench_settle_netns "$NETNS_BASE"
}
NETNS_BASE=$(bench_netns_base)
start=$(date +%s)
case $SCENARIO in
    both) run_host publish 600; run_host plain 600 ;;
    *) run_host "$SCENARIO" 600 ;;
esac
if [ "$CROWD" -gt 0 ]; then run_host crowded 900; fi
echo "total $(($(date +%s) - start)) s" >&2

"$BENCH_PY" "$HERE/cni/bench.py" report "$OUT" ${JSON:+"$JSON"}
