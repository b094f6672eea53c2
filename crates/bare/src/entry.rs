//! The entry point and the bare client (x86-64 Linux).
//!
//! Everything here runs before the C library is set up: system calls are
//! made directly, memory comes from `mmap`, and bytes are moved and
//! compared by volatile loops (see the crate's documentation).

use core::arch::global_asm;
use core::ptr::write_volatile;
use core::sync::atomic::Ordering;

use crate::bytes::{le, Buf, Bytes};
use crate::guess::{cli_state_dir, cni_state_dir};
use crate::probe::{build_id, netns_cookie, root_mount_id};
use crate::sys::{
    close, connect, map, read_exact, send, sys, syscall6, unix_socket, write_all, EINTR,
    MAX_SOCKET_PATH, SIGPIPE, SIG_IGN, SYS_EXIT_GROUP, SYS_MREMAP, SYS_READ, SYS_RT_SIGACTION,
};
use crate::{
    LOST, LOST_PATH, LOST_PATH_LEN, MAGIC, MAX_STDIN, REPLY_DONE, STDIN_LEN, STDIN_PTR, STDIN_STATE,
};

// The ELF entry point. The kernel starts a process here with the stack
// pointer at `argc`, and `rdx` holding a function for `atexit` (a dynamic
// loader's; zero for a static binary). `bare_main` returns only when the
// command is not served; then the stack pointer and `rdx` are put back as
// they were (r12 and r13 are preserved across calls) and the C library's
// `_start` begins the program as usual.
global_asm!(
    ".globl netloom_bare_start",
    ".type netloom_bare_start,@function",
    "netloom_bare_start:",
    "mov r12, rsp",
    "mov r13, rdx",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {main}",
    "mov rsp, r12",
    "mov rdx, r13",
    "jmp _start",
    ".size netloom_bare_start, .-netloom_bare_start",
    main = sym bare_main,
);

const AT_PHDR: usize = 3;
const AT_PHNUM: usize = 5;

/// The most output a reply may carry (the service's frame limit, twice).
const MAX_OUTPUT: usize = 32 << 20;

const SOCKET_NAME: &[u8] = b"netloom.sock";

/// What the process was started with.
pub(crate) struct Start {
    pub(crate) argc: usize,
    argv: *const *const u8,
    envp: *const *const u8,
    auxv: *const usize,
}

impl Start {
    /// A command line (pointers to NUL-terminated strings) with no
    /// environment, for tests.
    #[cfg(test)]
    pub(crate) fn of_args(argv: &'static [*const u8]) -> Start {
        static NONE: [usize; 2] = [0, 0];
        Start {
            argc: argv.len(),
            argv: argv.as_ptr(),
            envp: NONE.as_ptr() as *const *const u8,
            auxv: NONE.as_ptr(),
        }
    }

    pub(crate) fn arg(&self, i: usize) -> Bytes {
        // SAFETY: `i < argc`; the kernel put a string there.
        unsafe { Bytes::cstr(*self.argv.add(i)) }
    }

    /// Each environment entry, in order.
    pub(crate) fn env(&self, mut each: impl FnMut(Bytes)) {
        let mut i = 0;
        loop {
            // SAFETY: the kernel ends the list with a null pointer.
            let p = unsafe { *self.envp.add(i) };
            if p.is_null() {
                return;
            }
            // SAFETY: a NUL-terminated entry.
            each(unsafe { Bytes::cstr(p) });
            i += 1;
        }
    }

    pub(crate) fn aux(&self, key: usize) -> Option<usize> {
        let mut p = self.auxv;
        loop {
            // SAFETY: pairs, ended by the key 0.
            let (k, v) = unsafe { (*p, *p.add(1)) };
            if k == 0 {
                return None;
            }
            if k == key {
                return Some(v);
            }
            // SAFETY: the next pair.
            p = unsafe { p.add(2) };
        }
    }
}

/// Whether an environment entry is handed to the service.
pub(crate) fn forwarded(e: Bytes) -> bool {
    e.starts_with(Bytes::of(b"CNI_")) || e.starts_with(Bytes::of(b"NETLOOM_"))
}

/// Called from the entry point with the initial stack pointer; returns
/// when the program is to start as usual.
unsafe extern "C" fn bare_main(sp: *const usize) {
    // SAFETY: the stack as the kernel lays it out: argc, argv with a null
    // pointer after it, the environment likewise, then the auxiliary
    // vector.
    let start = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        let envp = argv.add(argc + 1);
        let mut e = envp;
        while !(*e).is_null() {
            e = e.add(1);
        }
        Start {
            argc,
            argv,
            envp,
            auxv: e.add(1) as *const usize,
        }
    };
    serve(&start);
}

pub(crate) fn serve(start: &Start) {
    let mut cni_command = None;
    let mut mode = None;
    let mut log = false;
    let mut env_state_dir = None;
    let mut env_len = 0usize;
    let mut env_count = 0usize;
    // The first entry of a name counts, as for `getenv`.
    start.env(|e| {
        if let Some(v) = e.value_of(Bytes::of(b"CNI_COMMAND=")) {
            cni_command = cni_command.or(Some(v));
        } else if let Some(v) = e.value_of(Bytes::of(b"NETLOOM_SERVICE=")) {
            mode = mode.or(Some(v));
        } else if let Some(v) = e.value_of(Bytes::of(b"NETLOOM_STATE_DIR=")) {
            env_state_dir = env_state_dir.or(Some(v));
        } else if e.starts_with(Bytes::of(b"NETLOOM_LOG=")) {
            log = true;
        }
        if forwarded(e) {
            env_len += 4 + e.len;
            env_count += 1;
        }
    });
    let require = mode.is_some_and(|m| m.is(Bytes::of(b"require")));
    if mode.is_some_and(|m| m.is(Bytes::of(b"off"))) || (log && !require) {
        return;
    }
    let mut stdin = Bytes {
        ptr: core::ptr::dangling(),
        len: 0,
    };
    let state_dir = match cni_command {
        Some(c) => {
            let served =
                c.is(Bytes::of(b"ADD")) || c.is(Bytes::of(b"DEL")) || c.is(Bytes::of(b"CHECK"));
            if !served {
                return;
            }
            stdin = match read_stdin() {
                Some(s) => s,
                None => return,
            };
            match cni_state_dir(stdin, env_state_dir) {
                Some(d) => d,
                None => return,
            }
        }
        None => match cli_state_dir(start, env_state_dir) {
            Some(d) => d,
            None => return,
        },
    };
    if state_dir.len == 0 {
        return;
    }

    // The frame, without stdin (sent from where it was read): header,
    // identity, state directory, arguments, environment, stdin's length.
    let mut args_len = 0usize;
    let mut i = 1;
    while i < start.argc {
        args_len += 4 + start.arg(i).len;
        i += 1;
    }
    let cap = 8 + 1 + 255 + 16 + 4 + state_dir.len + 4 + args_len + 4 + env_len + 4
        // The socket path, kept after the frame.
        + MAX_SOCKET_PATH + 1;
    let Some(mem) = map(cap) else { return };
    let mut frame = Buf {
        ptr: mem,
        cap,
        len: 0,
    };

    let Some(fd) = unix_socket() else { return };
    ask(start, &mut frame, fd, state_dir, stdin, env_count);
    close(fd);
}

/// Builds the request, sends it and, when served, prints the reply and
/// exits; returns when the program is to start as usual.
fn ask(
    start: &Start,
    frame: &mut Buf,
    fd: usize,
    state_dir: Bytes,
    stdin: Bytes,
    env_count: usize,
) {
    let Some(cookie) = netns_cookie(fd) else {
        return;
    };
    let Some(mount) = root_mount_id() else { return };
    let (Some(phdr), Some(phnum)) = (start.aux(AT_PHDR), start.aux(AT_PHNUM)) else {
        return;
    };
    let Some(id) = build_id(phdr, phnum) else {
        return;
    };

    let ok = frame.put(Bytes::of(&MAGIC))
        && frame.put_le(0, 4) // the body's length, set below
        && frame.put_byte(id.len as u8)
        && frame.put(id)
        && frame.put_le(cookie, 8)
        && frame.put_le(mount, 8)
        && frame.put_str(state_dir)
        && frame.put_le((start.argc.max(1) - 1) as u64, 4);
    if !ok {
        return;
    }
    let mut i = 1;
    while i < start.argc {
        if !frame.put_str(start.arg(i)) {
            return;
        }
        i += 1;
    }
    if !frame.put_le(env_count as u64, 4) {
        return;
    }
    let mut ok = true;
    start.env(|e| {
        if forwarded(e) {
            ok &= frame.put_str(e);
        }
    });
    if !ok || !frame.put_le(stdin.len as u64, 4) {
        return;
    }
    let body = (frame.len - 8 + stdin.len) as u64;
    if body > u32::MAX as u64 {
        return;
    }
    let mut i = 0;
    while i < 4 {
        // SAFETY: the length's place in the header written above.
        unsafe { write_volatile(frame.ptr.add(4 + i), (body >> (8 * i)) as u8) };
        i += 1;
    }
    let request = frame.bytes();

    // The socket's path, after the frame.
    let mut path = Buf {
        // SAFETY: the room reserved after the frame.
        ptr: unsafe { frame.ptr.add(frame.len) },
        cap: frame.cap - frame.len,
        len: 0,
    };
    let slash = state_dir.len > 0 && state_dir.at(state_dir.len - 1) == b'/';
    let ok = path.put(state_dir)
        && (slash || path.put_byte(b'/'))
        && path.put(Bytes::of(SOCKET_NAME))
        && path.len <= MAX_SOCKET_PATH;
    if !ok {
        return;
    }
    let path = path.bytes();
    if !connect(fd, path) {
        return;
    }
    // A write to a closed pipe or socket is an error, not death, as in
    // the program.
    let act: [usize; 4] = [SIG_IGN, 0, 0, 0];
    // SAFETY: a complete kernel sigaction; no old one is asked for.
    unsafe {
        syscall6(
            SYS_RT_SIGACTION,
            [SIGPIPE, act.as_ptr() as usize, 0, 8, 0, 0],
        )
    };
    if !send(fd, request, stdin) {
        return;
    }
    let mut head = [0u8; 14];
    let head = Bytes {
        ptr: head.as_mut_ptr(),
        len: head.len(),
    };
    if let Err(e) = read_exact(fd, head.ptr as *mut u8, head.len) {
        return lose(e, path);
    }
    if !head.take(4).is(Bytes::of(&MAGIC)) || head.at(4) != REPLY_DONE {
        // Refused, or an answer in another binary's form.
        return;
    }
    let code = head.at(5);
    let (out, err) = (le(head, 6, 4) as usize, le(head, 10, 4) as usize);
    if out + err > MAX_OUTPUT {
        return lose(0, path);
    }
    let mut text = core::ptr::dangling_mut::<u8>();
    if out + err > 0 {
        text = match map(out + err) {
            Some(m) => m,
            None => return lose(0, path),
        };
        if let Err(e) = read_exact(fd, text, out + err) {
            return lose(e, path);
        }
    }
    // SAFETY: within the mapping just read.
    write_all(2, unsafe { text.add(out) }, err);
    write_all(1, text, out);
    // SAFETY: ends the process.
    unsafe { sys(SYS_EXIT_GROUP, code as usize, 0, 0) };
}

/// Records a request that got no answer (`errno` 0: the service closed
/// the connection) for the program to report.
fn lose(errno: isize, path: Bytes) {
    LOST_PATH.store(path.ptr as usize, Ordering::Relaxed);
    LOST_PATH_LEN.store(path.len, Ordering::Relaxed);
    LOST.store(1 + errno as i32, Ordering::Release);
}

/// Reads all of stdin into new memory and records it for the program;
/// `None` when the read failed (recorded too) or stdin is too long.
fn read_stdin() -> Option<Bytes> {
    let mut cap = 64 << 10;
    let mut ptr = map(cap)?;
    let mut len = 0;
    loop {
        if len == cap {
            if cap >= MAX_STDIN {
                // Too long to serve; what was read is handed over.
                break;
            }
            // SAFETY: grows the mapping made above, moving it if need be.
            let r = unsafe { syscall6(SYS_MREMAP, [ptr as usize, cap, 2 * cap, 1, 0, 0]) };
            if r < 0 && r > -4096 {
                break;
            }
            ptr = r as usize as *mut u8;
            cap *= 2;
        }
        // SAFETY: into the mapping's free part.
        let n = unsafe { sys(SYS_READ, 0, ptr as usize + len, cap - len) };
        if n == -EINTR {
            continue;
        }
        if n < 0 {
            STDIN_STATE.store(n as i32, Ordering::Release);
            return None;
        }
        if n == 0 {
            STDIN_PTR.store(ptr as usize, Ordering::Relaxed);
            STDIN_LEN.store(len, Ordering::Relaxed);
            STDIN_STATE.store(1, Ordering::Release);
            return Some(Bytes { ptr, len });
        }
        len += n as usize;
    }
    // Stopped before the end: the program reads the rest after it.
    STDIN_PTR.store(ptr as usize, Ordering::Relaxed);
    STDIN_LEN.store(len, Ordering::Relaxed);
    STDIN_STATE.store(2, Ordering::Release);
    None
}
