//! Letting go of a socket without waiting for the kernel's deferred work.
//!
//! When the last reference to an nf_tables netlink socket goes, the kernel
//! finishes the freeing of every object that any transaction deleted,
//! which waits for an RCU grace period: 10–40 ms on an idle machine, for
//! a change that took effect long before. A short-lived command would
//! spend most of its time there, inside `close` or `exit`.
//!
//! [`release_in_background`] hands the last reference to a detached
//! process forked for nothing else: it holds the socket until this
//! process has let go of it, waits out a grace period, then exits. The
//! release itself waits under the namespace's nf_tables lock, which every
//! link registered there takes too; after the grace period it finds the
//! freeing done and holds the lock only briefly, so other commands and
//! tools creating links meanwhile are not held up.
//! No program is executed; the process only closes descriptors, reads a
//! pipe and exits.
//!
//! A long-lived process (`netloom serve`) calls [`use_a_thread`] first:
//! its forks would cost more than they save (every page it writes after a
//! fork is copied), and it need not exit soon, so a thread of its own
//! holds the sockets and sends the requests instead.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::OnceLock;

use crate::netns::PinToThisCpu;

/// Work for the background thread, each on its own duplicate of a socket.
enum Chore {
    /// Send this request, then let go of the socket.
    Send(OwnedFd, Vec<u8>),
    /// Let go of the socket.
    Drop(OwnedFd),
}

static THREAD: OnceLock<mpsc::Sender<Chore>> = OnceLock::new();

/// From now on, this process hands background sends and socket releases
/// to one thread of its own instead of detached processes. Idempotent.
pub fn use_a_thread() -> std::io::Result<()> {
    if THREAD.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = mpsc::channel::<Chore>();
    std::thread::Builder::new()
        .name("kernel-release".into())
        .spawn(move || {
            for chore in rx {
                match chore {
                    Chore::Send(fd, request) => {
                        send_once(std::os::fd::AsRawFd::as_raw_fd(&fd), &request);
                        drop(fd);
                    }
                    Chore::Drop(fd) => {
                        let _ = wait_out_grace_period();
                        drop(fd)
                    }
                }
            }
        })?;
    let _ = THREAD.set(tx);
    Ok(())
}

/// Sends `request` on `fd` once, again only when a signal interrupted it.
/// Only a system call: usable in the child of a fork.
fn send_once(fd: RawFd, request: &[u8]) {
    // SAFETY: a plain send of a buffer the caller holds.
    unsafe {
        while libc::send(fd, request.as_ptr().cast(), request.len(), 0) < 0
            && *libc::__errno_location() == libc::EINTR
        {}
    }
}

/// Waits for an RCU grace period while holding nothing: `membarrier`'s
/// `MEMBARRIER_CMD_GLOBAL` is the kernel's `synchronize_rcu`. Called
/// before letting go of a nf_tables socket: its release waits for the
/// objects earlier transactions deleted to be freed (after a grace period)
/// while it holds the namespace's nf_tables lock, which every link
/// registered in that namespace takes too. Waited out here first, that
/// freeing is done, and the release holds the lock only briefly. Returns
/// at once where the kernel refuses it (nohz_full): whether it waited.
/// Only a system call: usable in the child of a fork.
fn wait_out_grace_period() -> bool {
    // SAFETY: a system call with no memory arguments.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0 }
}

/// `membarrier` command: an RCU grace period (`synchronize_rcu`).
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;

/// Points `fd` at `devnull` (an open `/dev/null`), atomically dropping
/// this process's reference to what `fd` was, and closes `devnull`.
/// Whether `fd` was swapped.
///
/// # Safety
/// `devnull` must be a descriptor the caller owns; `fd` one it may replace.
unsafe fn swap_for_devnull(fd: RawFd, devnull: RawFd) -> bool {
    let swapped = libc::dup3(devnull, fd, libc::O_CLOEXEC) == fd;
    libc::close(devnull);
    swapped
}

/// A duplicate of `fd` (the same socket), owned.
fn duplicate(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, owned by the result.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    // SAFETY: `new` is a fresh descriptor nothing else owns.
    (new >= 0).then(|| unsafe { OwnedFd::from_raw_fd(new) })
}

/// Passes the socket behind `fd` to a detached process that drops it, and
/// points `fd` at `/dev/null` here, so that closing `fd` later costs
/// nothing. Whether that worked; if not, `fd` is untouched and closing it
/// simply waits.
pub(crate) fn release_in_background(fd: RawFd) -> bool {
    if let Some(thread) = THREAD.get() {
        return release_on(thread, fd);
    }
    // SAFETY: plain system calls on descriptors this function owns or was
    // given; the detached process only reads a pipe (see `run_detached`).
    unsafe {
        let mut pipe = [0 as libc::c_int; 2];
        if libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return false;
        }
        let [rx, tx] = pipe;
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if devnull < 0 {
            libc::close(rx);
            libc::close(tx);
            return false;
        }
        let made = run_detached(fd, rx, || {
            let mut byte = 0u8;
            // Returns on EOF: the caller has let go of its reference.
            while libc::read(rx, (&mut byte as *mut u8).cast(), 1) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
            let _ = wait_out_grace_period();
        });
        libc::close(rx);
        let swapped = if made {
            swap_for_devnull(fd, devnull)
        } else {
            libc::close(devnull);
            false
        };
        // EOF for the holder, which then exits with the last reference.
        libc::close(tx);
        swapped
    }
}

/// Sends `request` on the netlink socket `fd` from a detached process, so
/// that the time the kernel spends on it inside `send` is not this
/// process's. Whether the process was made; if not, nothing was sent.
/// The request goes out once: the caller must not need its answer.
pub(crate) fn send_in_background(fd: RawFd, request: &[u8]) -> bool {
    if let Some(thread) = THREAD.get() {
        return duplicate(fd)
            .is_some_and(|dup| thread.send(Chore::Send(dup, request.to_vec())).is_ok());
    }
    // SAFETY: the detached process only sends a buffer made before the
    // fork (see `run_detached`).
    unsafe { run_detached(fd, fd, || send_once(fd, request)) }
}

/// [`release_in_background`] through the background thread.
fn release_on(thread: &mpsc::Sender<Chore>, fd: RawFd) -> bool {
    let Some(dup) = duplicate(fd) else {
        return false;
    };
    // SAFETY: plain system calls on descriptors this function owns or was given.
    unsafe {
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if devnull < 0 || !swap_for_devnull(fd, devnull) {
            return false;
        }
    }
    // If the thread is gone, the duplicate is dropped here: closing waits,
    // as it would have without a background.
    let _ = thread.send(Chore::Drop(dup));
    true
}

/// Runs `body` in a detached process, forked twice so that init adopts it
/// and it is never left a zombie here, in its own session, with every
/// descriptor closed but `keep_a` and `keep_b`; it exits when `body`
/// returns. Waits only for the intermediate process, pinned to this CPU
/// meanwhile (see `PinToThisCpu`); the detached one gets the usual CPU
/// mask back. Whether the detached process was made. No program is
/// executed.
///
/// # Safety
/// This process may have other threads, so after the fork `body` must call
/// only async-signal-safe functions (plain system calls; no allocation, no
/// locks), on memory made before the fork.
unsafe fn run_detached(keep_a: RawFd, keep_b: RawFd, body: impl FnOnce()) -> bool {
    let pin = PinToThisCpu::new();
    let child = libc::fork();
    if child < 0 {
        return false;
    }
    if child == 0 {
        // The intermediate process: its exit status says whether the
        // detached one was made. What the children call here (fork,
        // sched_setaffinity, setsid, close_range, _exit) is
        // async-signal-safe.
        match libc::fork() {
            0 => {}
            n => libc::_exit(i32::from(n < 0)),
        }
        pin.unpin_this_thread();
        libc::setsid();
        close_all_but(keep_a, keep_b);
        body();
        libc::_exit(0);
    }
    let mut status = 0;
    while libc::waitpid(child, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR {}
    drop(pin);
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// Closes every descriptor but `a` and `b` (close_range, Linux 5.9+).
unsafe fn close_all_but(a: RawFd, b: RawFd) {
    let (lo, hi) = (a.min(b) as libc::c_uint, a.max(b) as libc::c_uint);
    let close_range = |first: libc::c_uint, last: libc::c_uint| {
        if first <= last {
            libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint);
        }
    };
    if lo > 0 {
        close_range(0, lo - 1);
    }
    if hi > lo + 1 {
        close_range(lo + 1, hi - 1);
    }
    close_range(hi + 1, libc::c_uint::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grace_period_is_waited_out_where_the_kernel_offers_it() {
        const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
        // SAFETY: a system call with no memory arguments.
        let offered = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
        if offered < 0 || offered & libc::c_long::from(MEMBARRIER_CMD_GLOBAL) == 0 {
            eprintln!(
                "SKIP: this kernel does not offer MEMBARRIER_CMD_GLOBAL (query gave {offered}); \
                 a nf_tables socket's release then waits for the freeing under the lock, as without it"
            );
            return;
        }
        assert!(
            wait_out_grace_period(),
            "membarrier(MEMBARRIER_CMD_GLOBAL) was refused although the query offers it"
        );
    }
}
