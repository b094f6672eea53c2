//! [`Host`]: a throwaway network + mount namespace pair held open by a
//! holder process.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;

use nix::sched::{setns, unshare, CloneFlags};

use crate::holder::{spawn_holder, HostError};

/// A throwaway host for kernel tests.
///
/// Owns a holder process living in a fresh network namespace and a private
/// mount namespace (all mounts made private, a fresh tmpfs on `/run` with
/// an empty `/run/netns`, a fresh sysfs on `/sys`). Loopback `lo` is up.
/// Named network namespaces made inside (`ip netns add`, bind mounts under
/// `/run/netns`) live in the host's `/run` and vanish with it.
///
/// Dropping the host kills and reaps the holder; the namespaces go away once
/// nothing else (an open fd, a socket, a process) keeps them alive.
#[derive(Debug)]
pub struct Host {
    child: Child,
    net: Arc<OwnedFd>,
    mnt: Arc<OwnedFd>,
    netns_path: PathBuf,
}

impl Host {
    /// Makes a host, panicking with the reason if it cannot be made.
    ///
    /// Tests that should skip instead use [`host_or_skip!`](crate::host_or_skip).
    pub fn new() -> Host {
        match Host::try_new() {
            Ok(host) => host,
            Err(err) => panic!("{err}"),
        }
    }

    /// Makes a host, or says which step failed and why.
    pub fn try_new() -> Result<Host, HostError> {
        crate::check_root()
            .map_err(|reason| HostError::new("check privileges", std::io::Error::other(reason)))?;
        let mut child = spawn_holder()?;
        let pid = child.id();
        let open = |kind: &str| -> Result<Arc<OwnedFd>, HostError> {
            let path = format!("/proc/{pid}/ns/{kind}");
            std::fs::File::open(&path)
                .map(|f| Arc::new(OwnedFd::from(f)))
                .map_err(|e| HostError::new(format!("open {path}"), e))
        };
        let fds = open("net").and_then(|net| Ok((net, open("mnt")?)));
        match fds {
            Ok((net, mnt)) => Ok(Host {
                child,
                net,
                mnt,
                netns_path: PathBuf::from(format!("/proc/{pid}/ns/net")),
            }),
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(err)
            }
        }
    }

    /// The holder's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the host's network namespace (`/proc/PID/ns/net`), valid while
    /// the host lives. Open it to hand the namespace to code under test.
    pub fn netns_path(&self) -> &Path {
        &self.netns_path
    }

    /// Path of the host's mount namespace (`/proc/PID/ns/mnt`).
    pub fn mntns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.pid()))
    }

    /// A command whose child runs inside the host's network and mount
    /// namespaces (it joins them between fork and exec).
    ///
    /// The command keeps the namespaces open itself, so it stays valid even
    /// if it outlives the host.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        let net = Arc::clone(&self.net);
        let mnt = Arc::clone(&self.mnt);
        // SAFETY: setns(2) on fds opened before the fork is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                for (fd, kind) in [(&mnt, libc::CLONE_NEWNS), (&net, libc::CLONE_NEWNET)] {
                    if libc::setns(fd.as_raw_fd(), kind) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        command
    }

    /// Runs `f` on a fresh thread that has joined the host's mount and
    /// network namespaces, and returns its result. The calling thread never
    /// changes namespace. A panic in `f` is resumed on the caller.
    pub fn enter<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|scope| {
            let joined = std::thread::Builder::new()
                .name("netloom-testhost-enter".into())
                .spawn_scoped(scope, || {
                    self.join_namespaces();
                    f()
                })
                .expect("spawn a thread to enter the test host")
                .join();
            match joined {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Moves the current (dedicated) thread into the host's namespaces.
    fn join_namespaces(&self) {
        // A thread shares its fs struct (root, cwd) with the process; it
        // must have its own before it may join another mount namespace.
        unshare(CloneFlags::CLONE_FS)
            .unwrap_or_else(|e| panic!("unshare(CLONE_FS) to enter test host: {e}"));
        setns(self.mnt.as_fd(), CloneFlags::CLONE_NEWNS)
            .unwrap_or_else(|e| panic!("join mount namespace of test host {}: {e}", self.pid()));
        setns(self.net.as_fd(), CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("join network namespace of test host {}: {e}", self.pid()));
    }
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
