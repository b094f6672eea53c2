//! Fast namespace creation for labs, which make hundreds of namespaces at
//! once.
//!
//! [`create_named_with_socket`] does in one dedicated thread what
//! [`Netns::create_named`] followed by [`Netlink::open_in`] does in two:
//! the thread that made the namespace opens the route-netlink socket there
//! and brings loopback up before it exits. Several may run in parallel.

use crate::error::Result;
use crate::netns::{create_named_with, Netns};
use crate::socket::Netlink;

/// Creates the named namespace `/run/netns/NAME` (like
/// [`Netns::create_named`]) and returns it with a route-netlink socket
/// inside it, loopback up.
///
/// `/run/netns` must already be a shared mount point: make one namespace
/// with [`Netns::create_named`] first. Fails with `EEXIST` if the name is
/// taken; on any failure the name is left free.
pub fn create_named_with_socket(name: &str) -> Result<(Netns, Netlink)> {
    create_named_with(name, false, |path| {
        let mut nl = Netlink::open_current()?;
        nl.set_up("lo", true)?;
        Ok((Netns::open_path(path)?, nl))
    })
    .map(|(_, made)| made)
}
