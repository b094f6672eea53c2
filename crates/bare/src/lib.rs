//! netloom's bare entry: a served command, run before the C library and
//! Rust's runtime start.
//!
//! A served `netloom connect` is a whole process whose own work is to send
//! its arguments to `netloom serve` and print the answer. Most of such a
//! process's time went to starting up: the C library's start-up alone (CPU
//! feature probing, `/proc/self/exe`, frame tables, thread-local storage,
//! relocations of its string functions) made a static "return 0" cost
//! about 0.5 ms here against 0.2 ms for a process that makes the exit
//! system call at once.
//!
//! So the binary's ELF entry point is [`netloom_bare_start`] (on x86-64
//! Linux): it looks at the arguments and environment on the initial stack
//! and, for `connect`, `disconnect` and CNI `ADD`, `DEL` and `CHECK`, asks
//! the service of the state directory with system calls only, prints the
//! reply and exits. For everything else, and whenever it cannot tell, it
//! jumps to the C library's own `_start` with the stack as the kernel left
//! it, and the program starts as usual (and may ask the service itself).
//!
//! The service decides: it reads the arguments, environment and stdin with
//! the same code as the full program, and refuses (the program then starts
//! as usual) whatever it would not have served from the full program.
//!
//! Code in this crate that runs at the bare entry may not call into the C
//! library or the Rust runtime: neither is set up. No allocation, no
//! thread-locals, no panics, no `memcpy`; byte loops use volatile accesses
//! so that the compiler does not turn them into calls to the C library's
//! string functions. A test of the `netloom` binary disassembles it and
//! fails on any call out of this crate's entry code.
//!
//! What the bare entry learned and the program needs afterwards is handed
//! over through [`stdin`] (a CNI call's stdin, read already) and [`lost`]
//! (a request that went out and got no answer).

#![cfg_attr(not(test), no_std)]

use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The first four bytes of a bare request and of its reply. As a frame
/// length (the service's other requests begin with one) it is far over
/// the largest frame, so no other request starts this way.
pub const MAGIC: [u8; 4] = *b"NLB1";

/// A reply's kind byte: served; the code and output follow.
pub const REPLY_DONE: u8 = 0;
/// A reply's kind byte: not served; the program starts and asks again.
pub const REPLY_REFUSED: u8 = 1;

/// The largest stdin the bare entry reads (the service's frame limit).
pub const MAX_STDIN: usize = 16 << 20;

/// Stdin as the bare entry read it: `STDIN_STATE` is 0 (not read), 1
/// (read to its end: `STDIN_PTR`, `STDIN_LEN`), 2 (that much read, the
/// rest not) or minus the errno of a failed read.
static STDIN_STATE: AtomicI32 = AtomicI32::new(0);
static STDIN_PTR: AtomicUsize = AtomicUsize::new(0);
static STDIN_LEN: AtomicUsize = AtomicUsize::new(0);

/// A request that went out with no answer: `LOST` is 0 (none), or 1 +
/// the errno of the failed read (1: the service closed the connection);
/// the socket's path is at `LOST_PATH`, `LOST_PATH_LEN` bytes.
static LOST: AtomicI32 = AtomicI32::new(0);
static LOST_PATH: AtomicUsize = AtomicUsize::new(0);
static LOST_PATH_LEN: AtomicUsize = AtomicUsize::new(0);

/// The stdin the bare entry already read, if it did: its bytes and
/// whether they are all of it (if not, the rest is still to be read), or
/// the errno of the read that failed. The program must use them instead
/// of reading stdin from the start (what was read is gone from a pipe).
pub fn stdin() -> Option<Result<(&'static [u8], bool), i32>> {
    match STDIN_STATE.load(Ordering::Acquire) {
        0 => None,
        state @ (1 | 2) => {
            let (ptr, len) = (
                STDIN_PTR.load(Ordering::Relaxed),
                STDIN_LEN.load(Ordering::Relaxed),
            );
            let complete = state == 1;
            if len == 0 {
                return Some(Ok((&[], complete)));
            }
            // SAFETY: set once by the bare entry to a mapping of `len`
            // read bytes that is never unmapped or written again.
            let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len) };
            Some(Ok((bytes, complete)))
        }
        e => Some(Err(-e)),
    }
}

/// Whether the bare entry sent a request and got no answer: the errno of
/// the failed read (`None` for a connection the service closed) and the
/// socket's path. The service may have done part of the work; the program
/// must not ask again but say so.
pub fn lost() -> Option<(Option<i32>, &'static [u8])> {
    match LOST.load(Ordering::Acquire) {
        0 => None,
        n => {
            let (ptr, len) = (
                LOST_PATH.load(Ordering::Relaxed),
                LOST_PATH_LEN.load(Ordering::Relaxed),
            );
            // SAFETY: set once by the bare entry to a mapping that is
            // never unmapped or written again.
            let path = unsafe { core::slice::from_raw_parts(ptr as *const u8, len) };
            Some(((n > 1).then_some(n - 1), path))
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod bytes;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod entry;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod guess;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod probe;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod sys;
