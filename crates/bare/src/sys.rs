//! System calls, made directly (the C library's wrappers need the C
//! library set up), and the few operations the bare entry builds on them.

use core::arch::asm;
use core::ptr::write_volatile;

use crate::bytes::Bytes;

pub(crate) const SYS_READ: usize = 0;
pub(crate) const SYS_WRITE: usize = 1;
pub(crate) const SYS_CLOSE: usize = 3;
pub(crate) const SYS_MMAP: usize = 9;
pub(crate) const SYS_RT_SIGACTION: usize = 13;
pub(crate) const SYS_WRITEV: usize = 20;
pub(crate) const SYS_MREMAP: usize = 25;
pub(crate) const SYS_SOCKET: usize = 41;
pub(crate) const SYS_CONNECT: usize = 42;
pub(crate) const SYS_GETSOCKOPT: usize = 55;
pub(crate) const SYS_EXIT_GROUP: usize = 231;
pub(crate) const SYS_STATX: usize = 332;

pub(crate) const EINTR: isize = 4;
pub(crate) const AF_UNIX: usize = 1;
pub(crate) const SOCK_STREAM_CLOEXEC: usize = 1 | 0o2000000;
pub(crate) const SOL_SOCKET: usize = 1;
pub(crate) const SO_NETNS_COOKIE: usize = 71;
pub(crate) const AT_FDCWD: isize = -100;
pub(crate) const STATX_MNT_ID: u32 = 0x1000;
pub(crate) const SIGPIPE: usize = 13;
pub(crate) const SIG_IGN: usize = 1;

/// The longest socket path (`sun_path` holds 108 bytes with its NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

#[inline(always)]
pub(crate) unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for system call `n`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[inline(always)]
pub(crate) unsafe fn sys(n: usize, a0: usize, a1: usize, a2: usize) -> isize {
    // SAFETY: as for `syscall6`.
    unsafe { syscall6(n, [a0, a1, a2, 0, 0, 0]) }
}

pub(crate) fn close(fd: usize) {
    // SAFETY: closes a descriptor this code opened.
    unsafe { sys(SYS_CLOSE, fd, 0, 0) };
}

/// Anonymous read-write memory of `len` bytes, or `None`.
pub(crate) fn map(len: usize) -> Option<*mut u8> {
    // SAFETY: a new private mapping; no memory of the process is touched.
    let r = unsafe {
        syscall6(
            SYS_MMAP,
            [0, len, 0x1 | 0x2, 0x02 | 0x20, usize::MAX, 0], // RW, PRIVATE|ANONYMOUS
        )
    };
    (!(-4095..=0).contains(&r)).then_some(r as usize as *mut u8)
}

/// A unix stream socket, when it does not take a standard descriptor's
/// number (0, 1 and 2 are closed then; the program opens them on
/// `/dev/null` first).
pub(crate) fn unix_socket() -> Option<usize> {
    // SAFETY: no pointers.
    let fd = unsafe { sys(SYS_SOCKET, AF_UNIX, SOCK_STREAM_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    if fd <= 2 {
        close(fd as usize);
        return None;
    }
    Some(fd as usize)
}

pub(crate) fn connect(fd: usize, path: Bytes) -> bool {
    // sockaddr_un: the family, the path and its NUL.
    let mut addr = [0u8; 2 + MAX_SOCKET_PATH + 1];
    let p = addr.as_mut_ptr();
    // SAFETY: writes within `addr` (the path was checked to fit).
    unsafe {
        write_volatile(p, AF_UNIX as u8);
        write_volatile(p.add(1), 0);
        let mut i = 0;
        while i < path.len {
            write_volatile(p.add(2 + i), path.at(i));
            i += 1;
        }
        write_volatile(p.add(2 + path.len), 0);
    }
    // SAFETY: a complete address of the length given.
    unsafe { sys(SYS_CONNECT, fd, p as usize, 2 + path.len + 1) == 0 }
}

/// Writes `a` then `b`; false when not all of it went.
pub(crate) fn send(fd: usize, mut a: Bytes, mut b: Bytes) -> bool {
    loop {
        if a.len == 0 {
            a = b;
            b = Bytes { ptr: b.ptr, len: 0 };
        }
        if a.len == 0 {
            return true;
        }
        let iov = [a.ptr as usize, a.len, b.ptr as usize, b.len];
        let count = if b.len == 0 { 1 } else { 2 };
        // SAFETY: `count` iovecs over memory that is readable.
        let n = unsafe { sys(SYS_WRITEV, fd, iov.as_ptr() as usize, count) };
        if n == -EINTR {
            continue;
        }
        if n <= 0 {
            return false;
        }
        let n = n as usize;
        if n < a.len {
            a = a.from(n);
        } else {
            let rest = n - a.len;
            a = b.from(rest);
            b = Bytes { ptr: b.ptr, len: 0 };
        }
    }
}

/// Reads exactly `len` bytes; the errno (0 for end of file) otherwise.
pub(crate) fn read_exact(fd: usize, to: *mut u8, len: usize) -> Result<(), isize> {
    transfer(SYS_READ, fd, to as usize, len)
}

/// Writes `len` bytes, as far as the descriptor takes them.
pub(crate) fn write_all(fd: usize, from: *const u8, len: usize) {
    let _ = transfer(SYS_WRITE, fd, from as usize, len);
}

/// Moves exactly `len` bytes at `at` with system call `nr` (`read` or
/// `write`), again after a signal and after a short count; the errno (0
/// when nothing more moves) otherwise.
fn transfer(nr: usize, fd: usize, at: usize, len: usize) -> Result<(), isize> {
    let mut done = 0;
    while done < len {
        // SAFETY: within the `len` bytes at `at`, which the caller gives
        // readable or writable as `nr` needs.
        let n = unsafe { sys(nr, fd, at + done, len - done) };
        if n == -EINTR {
            continue;
        }
        if n <= 0 {
            return Err(-n);
        }
        done += n as usize;
    }
    Ok(())
}
