# Shared by bench/cni.sh and bench/connect.sh, which source it; not run on
# its own. Uses the caller's ROOT and INSTALL; sets NL.

# bench_host_setup DIR...: first steps inside a throwaway host (the caller
# re-exec'd itself under `unshare --net --mount --propagation private`): a
# fresh tmpfs on /run and on each DIR that exists, loopback up. Exits 3
# unless the host is fresh: only loopback, not the machine's network
# namespace ($BENCH_OUTER_NETNS), nothing in /run, no nftables ruleset.
bench_host_setup() {
    local d links me
    # Private mount namespace (propagation private): these mounts never reach the machine.
    mount -t tmpfs -o mode=0755 netloom-bench /run
    for d in "$@"; do
        if [ -d "$d" ]; then mount -t tmpfs -o mode=0755 netloom-bench "$d"; fi
    done
    ip link set lo up
    # (mount(8) keeps its own notes in /run/mount; nothing else may be there)
    links=$(ip -o link | wc -l)
    me=$(readlink /proc/self/ns/net)
    if [ "$links" != 1 ] || [ "$me" = "$BENCH_OUTER_NETNS" ] || [ -n "$(ls -A /run | grep -vx mount)" ] ||
        [ -n "$(nft list ruleset 2>/dev/null)" ]; then
        echo "refusing to run: not a fresh throwaway host (links=$links, netns=$me, outer=$BENCH_OUTER_NETNS)" >&2
        exit 3
    fi
}

# bench_need_tools "PACKAGE..." COMMAND...: makes sure every COMMAND is on
# PATH, apt-get installing the PACKAGEs first if one is missing and INSTALL
# is set; exits 2 if one is still missing.
bench_need_tools() {
    local packages=$1 cmd missing=
    shift
    for cmd in "$@"; do command -v "$cmd" >/dev/null || missing=1; done
    if [ -n "$missing" ] && [ -n "$INSTALL" ]; then
        echo "installing the benchmark's tools ($packages) ..." >&2
        # shellcheck disable=SC2086 # one word a package
        { apt-get update -qq && apt-get install -y -qq $packages; } >/dev/null 2>&1 || true
    fi
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null || { echo "missing $cmd (apt-get install $packages)" >&2; exit 2; }
    done
}

# bench_netloom_bin: sets NL to the absolute path of the netloom binary:
# $NETLOOM_BIN, or the release binary scripts/build-release.sh builds (static
# where it can be). Exits 2 if there is no executable there.
bench_netloom_bin() {
    if [ -n "${NETLOOM_BIN:-}" ]; then
        NL=$NETLOOM_BIN
    else
        echo "building netloom (release, scripts/build-release.sh) ..." >&2
        NL=$(bash "$ROOT/scripts/build-release.sh")
    fi
    case $NL in /*) ;; *) NL=$PWD/$NL ;; esac
    [ -x "$NL" ] || { echo "no netloom binary at $NL" >&2; exit 2; }
}

# ver COMMAND...: the first line COMMAND prints, or nothing.
ver() { "$@" 2>/dev/null | head -1 || true; }

# Network namespaces the kernel holds (in use or dying), from the slab they
# live in; empty where /proc/slabinfo does not say.
bench_netns_objects() { awk '$1 == "net_namespace" { print $2 }' /proc/slabinfo 2>/dev/null; }

# bench_settle_netns BASE: waits (up to 60 s) until the kernel has freed the
# namespaces of earlier throwaway hosts, i.e. until the slab holds at most
# BASE + 64 of them (slack: it counts objects of partly used slabs). Dying
# namespaces were seen to stay allocated on an idle machine until the next
# namespace was made, so it makes one (and drops it at once) every 5 s.
# Without BASE (no slabinfo), waits 2 s.
bench_settle_netns() {
    local base=${1:-} i
    if [ -z "$base" ]; then sleep 2; return; fi
    unshare --net true
    for ((i = 0; i < 600; i++)); do
        [ "$(bench_netns_objects)" -le $((base + 64)) ] && return
        sleep 0.1
        if ((i % 50 == 49)); then unshare --net true; fi
    done
}

# bench_netns_base: the slab's count on a settled machine (one namespace
# made and dropped first, to free dying ones), for bench_settle_netns.
bench_netns_base() {
    [ -n "$(bench_netns_objects)" ] || return 0
    unshare --net true
    sleep 1
    bench_netns_objects
}
