#!/usr/bin/env bash
# Builds the netloom binary to install or to measure, and prints its path.
#
#   bash scripts/build-release.sh [cargo build options...]
#   bash scripts/build-release.sh --print-path   (the path only, nothing built)
#
# On Linux with glibc it is linked statically and not position independent:
# every command is a short process, and such a binary starts about half a
# millisecond sooner than the default dynamic, position-independent one (no
# shared libraries to map and bind, no relocations to apply). Elsewhere it is
# a plain `cargo build --release`.
#
# The flags go through RUSTFLAGS with an explicit --target so that they reach
# only netloom's own binary: a static C runtime cannot be used for the
# procedural-macro crates that cargo builds for the host.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case $target_dir in /*) ;; *) target_dir=$PWD/$target_dir ;; esac

if [ "${1:-}" = "--print-path" ]; then
    case $host in
    *-linux-gnu) echo "$target_dir/$host/release/netloom" ;;
    *) echo "$target_dir/release/netloom" ;;
    esac
    exit 0
fi

case $host in
*-linux-gnu)
    if ! compgen -G '/usr/lib/*/libc.a' >/dev/null && [ ! -e /usr/lib/libc.a ]; then
        echo "scripts/build-release.sh: no static C library (libc.a); install libc6-dev, or use cargo build --release" >&2
        exit 1
    fi
    # With rust-lld, rustc's default linker here (1.90 and later), the
    # functions a served command runs are laid out first and together
    # (scripts/client-path.order; see crates/netloom/build.rs).
    order=
    if [ "$host" = x86_64-unknown-linux-gnu ] && [ -f scripts/client-path.order ] &&
        [ "$(rustc -vV | sed -n 's/^release: 1\.\([0-9]*\).*/\1/p')" -ge 90 ]; then
        order=$PWD/scripts/client-path.order
    fi
    build() {
        NETLOOM_LINK_ORDER=$1 RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
            cargo build --release --quiet -p netloom --target "$host" "${@:2}" >&2
    }
    if ! build "$order" "$@"; then
        [ -n "$order" ] || exit 1
        echo "scripts/build-release.sh: linking in the order of scripts/client-path.order failed (is the linker not lld?); building without it" >&2
        build "" "$@"
    fi
    echo "$target_dir/$host/release/netloom"
    ;;
*)
    cargo build --release --quiet -p netloom "$@" >&2
    echo "$target_dir/release/netloom"
    ;;
esac
