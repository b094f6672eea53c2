//! Network sysctls (`/proc/sys/net/...`) of a given namespace.
//!
//! Which namespace a `/proc/sys/net` file belongs to is decided when it is
//! opened, by the opening thread's namespace; so files are opened, read and
//! written on a short-lived thread inside the namespace (or, on the way to
//! opening a socket there, by the calling thread while it is briefly
//! inside: [`crate::Netlink::open_in_with_sysctls`]).

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Turns `net.ipv4.ip_forward` or `net/ipv4/ip_forward` into its path
/// under `/proc/sys`. Only `net` keys are accepted: they are the
/// per-namespace ones; anything else would change the whole machine.
///
/// A dotted key cannot name an interface whose name has a dot
/// (`eth0.1`); use the slash form for those.
fn sysctl_path(key: &str) -> std::result::Result<PathBuf, String> {
    let slashed;
    let key = if key.contains('/') {
        key.trim_start_matches('/')
    } else {
        slashed = key.replace('.', "/");
        &slashed
    };
    let mut parts = key.split('/');
    if parts.next() != Some("net") {
        return Err(format!(
            "sysctl {key:?} is not under net/: only network sysctls are per namespace"
        ));
    }
    if parts.any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(format!(
            "sysctl key {key:?} has an empty, '.' or '..' component"
        ));
    }
    Ok(PathBuf::from("/proc/sys").join(key))
}

impl Netns {
    /// Reads a network sysctl in this namespace (value without the
    /// trailing newline), e.g. `read_sysctl("net.ipv4.ip_forward")`.
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let action = || format!("read sysctl {key} in {}", self.label());
        let path = sysctl_path(key).map_err(|why| Error::invalid(action(), why))?;
        self.run(|| {
            let mut text = String::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|e| Error::io(action(), e))?;
            text.truncate(text.trim_end().len());
            Ok(text)
        })?
    }

    /// Writes a network sysctl in this namespace.
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.write_sysctls(&[(key, value)])
    }

    /// Writes several network sysctls in this namespace, in order, on one
    /// thread. Stops at the first failure.
    pub fn write_sysctls(&self, settings: &[(&str, &str)]) -> Result<()> {
        let paths = sysctl_paths(settings, self.label())?;
        self.run(|| write_opened_here(settings, &paths, self.label()))?
    }
}

/// Turns IPv6 off on `link`, a link of the network namespace the calling
/// thread is in, which must be the one the process runs in (netloom's
/// threads never leave it; see [`Netns::run`] for the others). Written
/// directly, with no thread: `/proc/sys/net` shows the namespace of the
/// thread that opens it. `Ok(false)` when the kernel has no IPv6.
///
/// For links that only carry frames (a bridge's ports): while a link has
/// IPv6 on, bringing it up adds its multicast route to the namespace's
/// IPv6 routing table, and every later link brought up walks that table,
/// so with a thousand ports each one came up ~0.5 ms slower than the first.
pub fn disable_ipv6_here(link: &str) -> Result<bool> {
    crate::types::check_ifname(link)
        .map_err(|why| Error::invalid(format!("turn IPv6 off on {link}"), why))?;
    if !kernel_has_ipv6() {
        return Ok(false);
    }
    let key = format!("net/ipv6/conf/{link}/disable_ipv6");
    let setting = [(key.as_str(), "1")];
    let here = "the namespace netloom runs in";
    write_opened_here(&setting, &sysctl_paths(&setting, here)?, here)?;
    Ok(true)
}

/// Whether the kernel has IPv6, looked at once per process (a `statx` on
/// every connect otherwise). At worst, IPv6 loaded later goes unnoticed
/// here, and ports keep IPv6 on as before this existed.
fn kernel_has_ipv6() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::path::Path::new("/proc/sys/net/ipv6").exists())
}

/// The paths of `settings`' keys, checked before any is written.
pub(crate) fn sysctl_paths(settings: &[(&str, &str)], netns: &str) -> Result<Vec<PathBuf>> {
    settings
        .iter()
        .map(|(key, value)| {
            sysctl_path(key).map_err(|why| Error::invalid(write_action(key, value, netns), why))
        })
        .collect()
}

fn write_action(key: &str, value: &str, netns: &str) -> String {
    format!("write sysctl {key}={value} in {netns}")
}

/// Writes `settings` (at `paths`, from [`sysctl_paths`]) in the calling
/// thread's namespace, which must be `netns`: only for a thread that is
/// inside the namespace for this. Stops at the first failure.
pub(crate) fn write_opened_here(
    settings: &[(&str, &str)],
    paths: &[PathBuf],
    netns: &str,
) -> Result<()> {
    for ((key, value), path) in settings.iter().zip(paths) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|e| Error::io(write_action(key, value, netns), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sysctl_path;

    #[test]
    fn keys_map_to_proc_sys_net() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap().to_str(),
            Some("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.1/forwarding")
                .unwrap()
                .to_str(),
            Some("/proc/sys/net/ipv4/conf/eth0.1/forwarding")
        );
        assert!(sysctl_path("kernel.hostname").is_err());
        assert!(sysctl_path("net/../kernel/hostname").is_err());
        assert!(sysctl_path("net..ipv4").is_err());
    }
}
