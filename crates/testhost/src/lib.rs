//! Throwaway hosts for kernel tests.
//!
//! A [`Host`] is a fresh network namespace plus a private mount namespace
//! with its own tmpfs on `/run` (so `/run/netns` made inside never shows on
//! the machine) and its own sysfs on `/sys`. Everything a kernel test does
//! happens inside one, so tests never touch the machine's own network,
//! firewall or `/run/netns`, and any number of them can run in parallel.
//!
//! ```no_run
//! let host = netloom_testhost::host_or_skip!();
//! let out = host.command("ip").args(["link", "show"]).output().unwrap();
//! assert!(out.status.success());
//! let names = host.enter(|| std::fs::read_dir("/sys/class/net").unwrap().count());
//! assert_eq!(names, 1); // only `lo`
//! ```
//!
//! Skipping: a test that cannot run here (not root, no namespaces, a
//! missing kernel feature) calls [`skip`] with the reason, which prints
//! `SKIP: <test>: <reason>` to the real stderr (not swallowed by the test
//! harness). Set `NETLOOM_TEST_NO_SKIP=1` to turn every skip into a failure,
//! e.g. on CI machines that are known to have everything.

mod holder;
mod host;

pub use holder::HostError;
pub use host::Host;

use std::fmt::Display;
use std::io::Write;

/// Environment variable that turns every [`skip`] into a panic.
pub const NO_SKIP_ENV: &str = "NETLOOM_TEST_NO_SKIP";

/// Reports that the calling test is skipped, and why.
///
/// Prints `SKIP: <test name>: <reason>` straight to the process's stderr,
/// bypassing the test harness's output capture so the line is always seen.
/// If `NETLOOM_TEST_NO_SKIP` is set to anything but `0` or empty, panics
/// instead: a skip must never pass silently where the feature is expected.
pub fn skip(reason: impl Display) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    if std::env::var_os(NO_SKIP_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{test}: would skip, but {NO_SKIP_ENV} is set: {reason}");
    }
    // Write to the raw stderr handle: `eprintln!` is captured by libtest
    // and hidden for passing tests.
    let _ = writeln!(std::io::stderr().lock(), "SKIP: {test}: {reason}");
}

/// Checks that this process can make throwaway hosts: it must run as root.
///
/// Returns the reason to skip when it cannot.
pub fn check_root() -> Result<(), String> {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        Ok(())
    } else {
        Err(format!(
            "needs root to create network and mount namespaces (running as uid {euid})"
        ))
    }
}

/// Returns from the calling test (after printing a SKIP line) unless the
/// process runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if let ::std::result::Result::Err(reason) = $crate::check_root() {
            $crate::skip(reason);
            return;
        }
    };
}

/// Makes a [`Host`], or returns from the calling test after printing a
/// SKIP line saying why one cannot be made (not root, or namespaces are
/// unavailable).
#[macro_export]
macro_rules! host_or_skip {
    () => {
        match $crate::Host::try_new() {
            ::std::result::Result::Ok(host) => host,
            ::std::result::Result::Err(err) => {
                $crate::skip(err);
                return;
            }
        }
    };
}
