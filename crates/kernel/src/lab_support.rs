//! Fast namespace creation for labs, which make hundreds of namespaces at
//! once.
//!
//! [`create_named_with_socket`] does in one go what [`Netns::create_named`]
//! followed by [`Netns::write_sysctls`] and [`Netlink::open_in`] does in
//! three trips: the thread that made the namespace writes the sysctls,
//! opens the route-netlink socket there and brings loopback up. Several
//! may run in parallel.

use crate::error::Result;
use crate::netns::{create_named_with, Netns, Thread};
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
        crate::sysctl::write_opened_here(sysctls, &paths, &label)?;
        let mut nl = Netlink::open_current()?;
        nl.set_up("lo", true)?;
        Ok((Netns::open_path(path)?, nl))
    })
    .map(|(_, made)| made)
}
