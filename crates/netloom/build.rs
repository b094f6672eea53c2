//! With `NETLOOM_LINK_ORDER` naming a symbol ordering file (as
//! `scripts/build-release.sh` does, with `scripts/client-path.order`), the
//! linker (lld) lays the binary's functions out in that order: what a short
//! served command runs comes first and together, so it faults in a few
//! pages of code instead of one for nearly every function. Names the binary
//! lacks are skipped. Unset, the build is the default one.
//!
//! On x86-64 Linux the binary's entry point is `netloom_bare_start`
//! (crates/bare), which serves what it can before the C library starts
//! and otherwise jumps to the C library's `_start`.

fn main() {
    println!("cargo:rerun-if-env-changed=NETLOOM_LINK_ORDER");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch == "x86_64" && os == "linux" {
        println!("cargo:rustc-link-arg-bin=netloom=-Wl,-u,netloom_bare_start");
        println!("cargo:rustc-link-arg-bin=netloom=-Wl,-e,netloom_bare_start");
    }
    let Some(path) = std::env::var_os("NETLOOM_LINK_ORDER").filter(|p| !p.is_empty()) else {
        return;
    };
    let path = path.to_string_lossy();
    println!("cargo:rerun-if-changed={path}");
    println!("cargo:rustc-link-arg-bin=netloom=-Wl,--symbol-ordering-file={path}");
    println!("cargo:rustc-link-arg-bin=netloom=-Wl,--no-warn-symbol-ordering");
}
