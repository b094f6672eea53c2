//! Network namespaces: open, create and remove them, and run code inside.
//!
//! The rule: a thread that calls `setns` or `unshare(CLONE_NEWNET)` is a
//! fresh, dedicated, short-lived thread that does only the one job and
//! exits. The caller's thread never changes namespace, with one exception
//! made on purpose, [`briefly_inside`]: for the few system calls of
//! opening a socket (and writing sysctls) in a sandbox on each connect,
//! the calling thread goes in and comes straight back, running no other
//! code in between.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

/// `ioctl(fd, NS_GET_NSTYPE)`: `_IO(0xb7, 0x3)` from linux/nsfs.h.
const NS_GET_NSTYPE: libc::Ioctl = 0xb703;

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open network namespace.
///
/// Holding a `Netns` keeps the namespace alive (it holds an fd to it).
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    label: String,
}

impl Netns {
    /// The network namespace of the calling thread.
    pub fn current() -> Result<Netns> {
        Netns::open_path("/proc/thread-self/ns/net")
    }

    /// Opens the named namespace `/run/netns/NAME` (as made by `ip netns add`
    /// or [`Netns::create_named`]).
    pub fn open_named(name: &str) -> Result<Netns> {
        let action = || format!("open netns {name:?}");
        check_netns_name(name).map_err(|why| Error::invalid(action(), why))?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        let file = File::open(&path).map_err(|e| Error::io(action(), e))?;
        Netns::from_file(file, format!("netns {name:?}"), action)
    }

    /// Opens a namespace file, e.g. `/proc/PID/ns/net` or a bind mount of one.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref();
        let action = || format!("open netns {}", path.display());
        let file = File::open(path).map_err(|e| Error::io(action(), e))?;
        Netns::from_file(file, format!("netns {}", path.display()), action)
    }

    /// Opens the network namespace of process `pid`.
    pub fn open_pid(pid: u32) -> Result<Netns> {
        Netns::open_path(format!("/proc/{pid}/ns/net"))
    }

    fn from_file(file: File, label: String, action: impl FnOnce() -> String) -> Result<Netns> {
        let ns = Netns {
            fd: OwnedFd::from(file),
            label,
        };
        // Make sure it really is a network namespace before anyone setns-es.
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
        let kind = unsafe { libc::ioctl(ns.fd.as_raw_fd(), NS_GET_NSTYPE) };
        if kind < 0 {
            let why = std::io::Error::last_os_error();
            return Err(Error::invalid(
                action(),
                format!("not a namespace file ({why})"),
            ));
        }
        if kind != libc::CLONE_NEWNET {
            return Err(Error::invalid(
                action(),
                "a namespace, but not a network namespace",
            ));
        }
        Ok(ns)
    }

    /// Creates a new, unnamed network namespace. It lives as long as the
    /// returned `Netns` (or anything else that holds it: a socket, a
    /// process, a bind mount).
    pub fn create_anonymous() -> Result<Netns> {
        let action = "create anonymous netns";
        let fd = on_dedicated_thread(|| -> Result<OwnedFd> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::nix(action, e))?;
            File::open("/proc/thread-self/ns/net")
                .map(OwnedFd::from)
                .map_err(|e| Error::io(action, e))
        })
        .map_err(|why| Error::invalid(action, why))??;
        Ok(Netns {
            fd,
            label: "anonymous netns".into(),
        })
    }

    /// Creates the named namespace `/run/netns/NAME`, the way `ip netns add`
    /// does: a new namespace bind-mounted onto an empty file in a shared
    /// `/run/netns`, so `ip netns exec NAME` and other mount namespaces see
    /// it. Fails with `EEXIST` if the name is taken.
    pub fn create_named(name: &str) -> Result<Netns> {
        let action = || format!("create netns {name:?}");
        let (path, ()) = create_named_with(name, true, Thread::Dedicated, |_| Ok(()))?;
        let file = File::open(&path).map_err(|e| Error::io(action(), e))?;
        Ok(Netns {
            fd: OwnedFd::from(file),
            label: format!("netns {name:?}"),
        })
    }

    /// Removes the named namespace `/run/netns/NAME` (unmounts and deletes
    /// the file). The namespace itself dies once nothing else holds it.
    /// Fails with `ENOENT` if there is no such name.
    pub fn remove_named(name: &str) -> Result<()> {
        let action = || format!("remove netns {name:?}");
        check_netns_name(name).map_err(|why| Error::invalid(action(), why))?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        match umount2(&path, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (a stale file); remove it all the same.
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(e) => return Err(Error::nix(action(), e)),
        }
        std::fs::remove_file(&path).map_err(|e| Error::io(action(), e))
    }

    /// Names of the namespaces in `/run/netns`.
    pub fn list_named() -> Result<Vec<String>> {
        let action = || format!("list {NETNS_RUN_DIR}");
        let entries = match std::fs::read_dir(NETNS_RUN_DIR) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(action(), e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(action(), e))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Runs `f` on a fresh thread inside this namespace and returns its
    /// result. The thread exits afterwards; the caller's thread never
    /// changes namespace. A panic in `f` is resumed on the caller.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let action = || format!("enter {}", self.label);
        on_dedicated_thread(|| {
            setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET)
                .map(|()| f())
                .map_err(|e| Error::nix(action(), e))
        })
        .map_err(|why| Error::invalid(action(), why))?
    }

    /// A command whose process runs inside this namespace (it enters the
    /// namespace between fork and exec; the caller never moves). For running
    /// a user's program in a sandbox, never for netloom's own work.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Result<std::process::Command> {
        use std::os::unix::process::CommandExt;
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| Error::io(format!("duplicate fd of {}", self.label), e))?;
        let mut cmd = std::process::Command::new(program);
        // SAFETY: setns is async-signal-safe and touches no memory of the
        // parent; the fd is owned by the closure and valid in the child.
        unsafe {
            cmd.pre_exec(move || {
                setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        Ok(cmd)
    }

    /// A short description for messages (`netns "sb1"`, `netns /proc/7/ns/net`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The namespace's inode number: equal for two handles to one namespace.
    pub fn inode(&self) -> Result<u64> {
        nix::sys::stat::fstat(self.fd.as_fd())
            .map(|st| st.st_ino)
            .map_err(|e| Error::nix(format!("stat {}", self.label), e))
    }

    /// Another handle to the same namespace.
    pub fn try_clone(&self) -> Result<Netns> {
        Ok(Netns {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| Error::io(format!("duplicate fd of {}", self.label), e))?,
            label: self.label.clone(),
        })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Runs `f` with the calling thread inside `ns`, and moves the thread back
/// before returning, also when `f` panics. If it cannot be moved back the
/// process aborts: no code may run on a thread that is in a namespace it
/// does not know it is in.
///
/// Only for this crate's own short steps that must be made from inside a
/// namespace and make no other system calls: opening a socket there and
/// writing its sysctls ([`crate::Netlink::open_in_with_sysctls`], on every
/// connect). A fresh thread for those cost the caller 0.12–0.15 ms
/// (start, switch, exit); going in and out, with the writes and the
/// socket, 0.03–0.04 ms (probed inside the service, medians of 110
/// connects). Anything that runs other code inside a namespace uses
/// [`Netns::run`].
pub(crate) fn briefly_inside<T>(
    ns: &Netns,
    action: &dyn Fn() -> String,
    f: impl FnOnce() -> T,
) -> Result<T> {
    /// Moves the thread back into `0` when dropped.
    struct Back(File);
    impl Drop for Back {
        fn drop(&mut self) {
            if let Err(e) = setns(self.0.as_fd(), CloneFlags::CLONE_NEWNET) {
                eprintln!(
                    "netloom: cannot move a thread back to its network namespace ({e}); stopping"
                );
                std::process::abort();
            }
        }
    }
    let home = File::open("/proc/thread-self/ns/net")
        .map_err(|e| Error::io(format!("{}: open this thread's namespace", action()), e))?;
    setns(ns.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::nix(action(), e))?;
    let _back = Back(home);
    Ok(f())
}

/// Runs `f` on a new scoped thread; `Err` only if the thread could not be
/// spawned. Panics inside `f` are resumed on the caller.
pub(crate) fn on_dedicated_thread<F, T>(f: F) -> std::result::Result<T, String>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    std::thread::scope(|scope| {
        let handle = {
            let _pin = PinToThisCpu::new();
            std::thread::Builder::new()
                .name("netloom-netns".into())
                .spawn_scoped(scope, f)
                .map_err(|e| format!("cannot spawn a thread: {e}"))?
        };
        match handle.join() {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// While alive, keeps the calling thread on the CPU it is running on; a
/// thread spawned meanwhile inherits that. For a helper thread the caller
/// only waits for: the scheduler would otherwise start it on another,
/// idle CPU, and on virtual machines waking an idle CPU (for the thread,
/// then again for the caller when it is done) costs about a millisecond
/// each way, against some 40 µs for the whole round trip on one CPU.
pub(crate) struct PinToThisCpu {
    saved: Option<libc::cpu_set_t>,
}

impl PinToThisCpu {
    pub(crate) fn new() -> PinToThisCpu {
        // SAFETY: plain system calls on a cpu_set_t owned here.
        unsafe {
            let cpu = libc::sched_getcpu();
            let mut saved: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if cpu < 0 || libc::sched_getaffinity(0, size, &mut saved) != 0 {
                return PinToThisCpu { saved: None };
            }
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            if libc::sched_setaffinity(0, size, &one) != 0 {
                return PinToThisCpu { saved: None };
            }
            PinToThisCpu { saved: Some(saved) }
        }
    }

    /// For a process forked while pinned, which should not stay so:
    /// gives the calling thread the mask from before the pin. Only a
    /// system call, so it may be used in the child of a fork.
    pub(crate) fn unpin_this_thread(&self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores the mask read in `new`.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), saved);
            }
        }
    }
}

impl Drop for PinToThisCpu {
    fn drop(&mut self) {
        self.unpin_this_thread();
    }
}

/// Which thread [`create_named_with`] makes the namespace on.
pub(crate) enum Thread {
    /// A short-lived thread of its own; the caller never moves.
    Dedicated,
    /// The calling thread, which is left inside the new namespace: only
    /// for a thread made for this work, which exits when it is done.
    Calling,
}

/// Moves the calling thread into a new network namespace and bind-mounts
/// it on `path` (an empty file already there).
fn enter_new_and_bind(path: &Path, action: &dyn Fn() -> String) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::nix(action(), e))?;
    mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Error::nix(
            format!("{}: bind mount onto {}", action(), path.display()),
            e,
        )
    })
}

/// Creates the named namespace `/run/netns/NAME`: checks the name, makes
/// `/run/netns` a shared mount point first if `share_run_dir`, creates the
/// empty file, and on a dedicated thread unshares a new network namespace,
/// bind-mounts it onto the file and runs `on_thread(path)` still inside it.
/// Returns the file's path and what `on_thread` returned. Fails with
/// `EEXIST` if the name is taken; on any failure the name is left free.
pub(crate) fn create_named_with<T: Send>(
    name: &str,
    share_run_dir: bool,
    thread: Thread,
    on_thread: impl FnOnce(&Path) -> Result<T> + Send,
) -> Result<(PathBuf, T)> {
    let action = || format!("create netns {name:?}");
    check_netns_name(name).map_err(|why| Error::invalid(action(), why))?;
    if share_run_dir {
        make_run_dir_shared()
            .map_err(|e| Error::new(format!("{}: {}", action(), e.action()), e.into_kind()))?;
    }
    let path = Path::new(NETNS_RUN_DIR).join(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|e| Error::io(action(), e))?;
    let made = match thread {
        Thread::Dedicated => on_dedicated_thread(|| -> Result<T> {
            enter_new_and_bind(&path, &action)?;
            on_thread(&path)
        })
        .map_err(|why| Error::invalid(action(), why))
        .and_then(|r| r),
        Thread::Calling => enter_new_and_bind(&path, &action).and_then(|()| on_thread(&path)),
    };
    match made {
        Ok(value) => Ok((path, value)),
        Err(err) => {
            // EINVAL if the bind mount was never made: nothing to undo.
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&path);
            Err(err)
        }
    }
}

/// Rejects names that would escape `/run/netns` or that `ip netns` refuses.
fn check_netns_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("netns name {name:?} is not allowed"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(format!("netns name {name:?} contains '/' or NUL"));
    }
    if name.len() > 255 {
        return Err(format!("netns name is {} bytes, over 255", name.len()));
    }
    Ok(())
}

/// Makes `/run/netns` exist and be a shared mount point, as `ip netns add`
/// does, so namespace bind mounts propagate to other mount namespaces.
fn make_run_dir_shared() -> Result<()> {
    // One thread at a time, so two creators do not both stack a bind mount.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = Path::new(NETNS_RUN_DIR);
    let action = || format!("prepare {NETNS_RUN_DIR}");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io(action(), e))?;
    let share = || {
        mount(
            Some(OsStr::new("none")),
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match share() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself, then share it.
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::nix(format!("{}: bind mount onto itself", action()), e))?;
            share().map_err(|e| Error::nix(format!("{}: make shared", action()), e))
        }
        Err(e) => Err(Error::nix(format!("{}: make shared", action()), e)),
    }
}

/// The path of a named namespace.
pub fn named_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> PathBuf {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    }

    #[test]
    fn briefly_inside_brings_the_thread_back_also_after_a_panic() {
        let host = netloom_testhost::host_or_skip!();
        let ns = Netns::open_path(host.netns_path()).unwrap();
        let home = here();
        let action = || "enter the test host".to_string();
        let inside = briefly_inside(&ns, &action, here).unwrap();
        assert_eq!(inside, std::fs::read_link(host.netns_path()).unwrap());
        assert_ne!(inside, home);
        assert_eq!(here(), home);

        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            briefly_inside(&ns, &action, || panic!("a step failed inside"))
        }));
        assert!(caught.is_err());
        assert_eq!(here(), home, "left inside after a panic");
    }
}
