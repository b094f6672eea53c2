//! Fast namespace creation for labs, which make hundreds of namespaces at
//! once.
//!
//! [`create_named_with_socket`] does in one go what [`Netns::create_named`]
//! followed by [`Netns::write_sysctls`] and [`Netlink::open_in`] does in
//! three trips: the thread that made the namespace writes the sysctls,
//! opens the route-netlink socket there and brings loopback up. Several
//! may run in parallel. [`create_named_with_sockets`] also opens, on the
//! same thread, an nftables socket inside and a route-netlink socket in a
//! neighbouring namespace (a lab's bridge namespace and its gateway).

use std::os::fd::AsFd;

use nix::sched::{setns, CloneFlags};

use crate::error::{Error, Result};
use crate::netns::{create_named_with, on_dedicated_thread, Netns, Thread};
use crate::nft::{NftError, NftSocket};
use crate::socket::Netlink;

/// Creates the named namespace `/run/netns/NAME` (like
/// [`Netns::create_named`]), writes `sysctls` in it (keys as for
/// [`Netns::write_sysctls`]; `default` ones apply to every link made there
/// later) and returns it with a route-netlink socket inside it, loopback
/// up. The work runs on a short-lived thread; the caller never moves.
/// Fails with `EEXIST` if the name is taken; on any failure the name is
/// left free.
pub fn create_named_with_socket(name: &str, sysctls: &[(&str, &str)]) -> Result<(Netns, Netlink)> {
    create(name, sysctls, Thread::Dedicated)
}

/// [`create_named_with_socket`] on the calling thread, which is left
/// inside the new namespace: only for a thread made for this work, which
/// exits when it is done. Saves a thread per namespace. `/run/netns` must
/// already be a shared mount point: make one namespace with
/// [`create_named_with_socket`] or [`Netns::create_named`] first.
pub fn create_named_with_socket_here(
    name: &str,
    sysctls: &[(&str, &str)],
) -> Result<(Netns, Netlink)> {
    create(name, sysctls, Thread::Calling)
}

fn create(name: &str, sysctls: &[(&str, &str)], thread: Thread) -> Result<(Netns, Netlink)> {
    let label = format!("netns {name:?}");
    let paths = crate::sysctl::sysctl_paths(sysctls, &label)?;
    let share_run_dir = matches!(thread, Thread::Dedicated);
    create_named_with(name, share_run_dir, thread, |path| {
        settle_here(path, sysctls, &paths, &label)
    })
    .map(|(_, made)| made)
}

/// On the thread that has just made the namespace at `path` (labelled
/// `label`) and is still inside it: writes `sysctls` (at `paths`), opens
/// a route-netlink socket and brings loopback up.
fn settle_here(
    path: &std::path::Path,
    sysctls: &[(&str, &str)],
    paths: &[std::path::PathBuf],
    label: &str,
) -> Result<(Netns, Netlink)> {
    crate::sysctl::write_opened_here(sysctls, paths, label)?;
    let mut nl = Netlink::open_labelled(label.to_owned())?;
    nl.set_up("lo", true)?;
    Ok((Netns::open_path(path)?, nl))
}

/// What [`create_named_with_sockets`] hands back.
pub struct NamedWithSockets {
    /// The new namespace.
    pub ns: Netns,
    /// A route-netlink socket inside it (loopback is up).
    pub nl: Netlink,
    /// An nftables socket inside it; its own result, so the caller can
    /// report a failure as the firewall error it is.
    pub nft: std::result::Result<NftSocket, NftError>,
    /// A route-netlink socket in `neighbour`, the namespace given.
    pub neighbour: Netlink,
}

/// [`create_named_with_socket`] for a namespace that is also given
/// nftables rules and a link to `neighbour`: one thread opens a
/// route-netlink socket in `neighbour`, then makes the namespace, writes
/// `sysctls`, opens a route-netlink and an nftables socket there and
/// brings loopback up. One thread instead of three; the caller never
/// moves. Fails with `EEXIST` if the name is taken; on any failure the
/// name is left free.
pub fn create_named_with_sockets(
    name: &str,
    sysctls: &[(&str, &str)],
    neighbour: &Netns,
) -> Result<NamedWithSockets> {
    let label = format!("netns {name:?}");
    let paths = crate::sysctl::sysctl_paths(sysctls, &label)?;
    let action = || format!("open route netlink socket in {}", neighbour.label());
    on_dedicated_thread(|| -> Result<NamedWithSockets> {
        setns(neighbour.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::nix(action(), e))?;
        let outer = Netlink::open_labelled(neighbour.label().to_owned())?;
        // This thread exits when done, so it may enter the new namespace
        // itself; `/run/netns` is made a shared mount point first.
        create_named_with(name, true, Thread::Calling, |path| {
            let (ns, nl) = settle_here(path, sysctls, &paths, &label)?;
            Ok(NamedWithSockets {
                ns,
                nl,
                nft: NftSocket::open(),
                neighbour: outer,
            })
        })
        .map(|(_, made)| made)
    })
    .map_err(|why| Error::invalid(action(), why))?
}
