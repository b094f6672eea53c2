#!/usr/bin/env bash
# Writes scripts/client-path.order: the functions a short-lived netloom
# process runs when `netloom serve` does its work (a served connect,
# disconnect, CNI ADD and DEL), in the order they first run.
# scripts/build-release.sh has the linker put them first in the binary, next
# to each other: such a process then faults in a few pages of code instead of
# one page for nearly every function it calls (each fault costs a few µs).
#
#   sudo bash scripts/order-client-path.sh
#
# Needs root (it works in a throwaway network and mount namespace) and
# valgrind (callgrind lists every function a process runs). Run it again when
# the toolchain or the dependencies change: the names carry hashes that then
# change, and names no longer in the binary are skipped when linking.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" != 0 ]; then
    echo "scripts/order-client-path.sh: run as root (it makes a throwaway namespace)" >&2
    exit 1
fi
command -v valgrind >/dev/null || { echo "scripts/order-client-path.sh: needs valgrind" >&2; exit 1; }
bin=$(bash scripts/build-release.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/run.sh" <<'EOF'
set -euo pipefail
bin=$1 work=$2
mount -t tmpfs tmpfs /run
ip link set lo up
export NETLOOM_STATE_DIR=/run/state
mkdir -p /run/netns "$work/cni"
ln -s "$bin" "$work/cni/netloom"
"$bin" network create n1 --subnet 10.88.0.0/16 >/dev/null
for i in 1 2 3 4; do ip netns add "c$i"; done
"$bin" serve 2>"$work/serve.log" &
svc=$!
for _ in $(seq 100); do [ -S /run/state/netloom.sock ] && break; sleep 0.05; done
export NETLOOM_SERVICE=require
grind() { valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$1.out" "${@:2}" >/dev/null 2>>"$work/valgrind.log"; }
"$bin" connect n1 c1 --publish 8081:80 >/dev/null
grind connect "$bin" connect n1 c2 --publish 8082:80
grind disconnect "$bin" disconnect n1 c2
conf='{"cniVersion":"1.0.0","name":"bnet","type":"netloom","driver":"bridge","subnets":["10.89.0.0/16"],
"capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[{"hostPort":9080,"containerPort":80,"protocol":"tcp"}]}}'
export CNI_IFNAME=eth0 CNI_PATH="$work/cni" CNI_NETNS=/run/netns/c3
CNI_COMMAND=ADD CNI_CONTAINERID=warm "$bin" <<<"$conf" >/dev/null
export CNI_NETNS=/run/netns/c4 CNI_CONTAINERID=c4
export CNI_COMMAND=ADD; grind cni-add "$bin" <<<"${conf/9080/9084}"
export CNI_COMMAND=DEL; grind cni-del "$bin" <<<"${conf/9080/9084}"
kill "$svc"
wait "$svc" || true
EOF
unshare --net --mount --propagation private bash "$work/run.sh" "$bin" "$work"

# A function's name is given where callgrind first meets it, as a function
# (fn=) or as a callee (cfn=); what has no symbol (an address) is left out.
{
    echo "# Functions of a served netloom command, in the order they first run;"
    echo "# made by scripts/order-client-path.sh, used by scripts/build-release.sh."
    for run in connect disconnect cni-add cni-del; do
        grep -h -E '^c?fn=\([0-9]+\) ' "$work/$run.out" | sed -E 's/^c?fn=\([0-9]+\) //'
    done | grep -v -E '^(0x|\(below main\))' | awk '!seen[$0]++'
} >"$root/scripts/client-path.order"
echo "scripts/client-path.order: $(grep -vc '^#' "$root/scripts/client-path.order") functions" >&2
