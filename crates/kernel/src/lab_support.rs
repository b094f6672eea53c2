//! Fast namespace creation for labs, which make hundreds of namespaces at
//! once.
//!
//! [`create_named_with_socket`] does in one dedicated thread what
//! [`Netns::create_named`] followed by [`Netlink::open_in`] does in two:
//! the thread that made the namespace opens the route-netlink socket there
//! and brings loopback up before it exits. Several may run in parallel.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{Error, Result};
use crate::netns::{on_dedicated_thread, Netns, NETNS_RUN_DIR};
use crate::socket::Netlink;

/// Creates the named namespace `/run/netns/NAME` (like
/// [`Netns::create_named`]) and returns it with a route-netlink socket
/// inside it, loopback up.
///
/// `/run/netns` must already be a shared mount point: make one namespace
/// with [`Netns::create_named`] first. Fails with `EEXIST` if the name is
/// taken; on any failure the name is left free.
pub fn create_named_with_socket(name: &str) -> Result<(Netns, Netlink)> {
    let action = || format!("create netns {name:?}");
    if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(Error::invalid(
            action(),
            format!("netns name {name:?} is not allowed"),
        ));
    }
    let path = Path::new(NETNS_RUN_DIR).join(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|e| Error::io(action(), e))?;
    let made = on_dedicated_thread(|| -> Result<Netlink> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::nix(action(), e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            Error::nix(
                format!("{}: bind mount onto {}", action(), path.display()),
                e,
            )
        })?;
        let mut nl = Netlink::open_current()?;
        nl.set_up("lo", true)?;
        Ok(nl)
    })
    .map_err(|why| Error::invalid(action(), why))
    .and_then(|r| r)
    .and_then(|nl| Ok((Netns::open_path(&path)?, nl)));
    if made.is_err() {
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&path);
    }
    made
}
