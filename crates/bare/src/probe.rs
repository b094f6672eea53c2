//! What identifies the process to the service: the network namespace's
//! cookie, the root mount's id, the executable's build ID (as
//! `netloom::service::identity` reads them with the C library).

use crate::bytes::{le, Bytes};
use crate::sys::{
    syscall6, AT_FDCWD, SOL_SOCKET, SO_NETNS_COOKIE, STATX_MNT_ID, SYS_GETSOCKOPT, SYS_STATX,
};

pub(crate) const PT_LOAD: u32 = 1;
pub(crate) const PT_NOTE: u32 = 4;
pub(crate) const PT_PHDR: u32 = 6;
pub(crate) const NT_GNU_BUILD_ID: u32 = 3;

/// The cookie of the network namespace the socket `fd` was opened in.
pub(crate) fn netns_cookie(fd: usize) -> Option<u64> {
    let mut cookie = 0u64;
    let mut len: u32 = 8;
    // SAFETY: the option writes at most `len` bytes into `cookie`.
    let r = unsafe {
        syscall6(
            SYS_GETSOCKOPT,
            [
                fd,
                SOL_SOCKET,
                SO_NETNS_COOKIE,
                &mut cookie as *mut u64 as usize,
                &mut len as *mut u32 as usize,
                0,
            ],
        )
    };
    (r == 0 && len == 8).then_some(cookie)
}

/// The id of the mount `/` is on.
pub(crate) fn root_mount_id() -> Option<u64> {
    // struct statx is 256 bytes: stx_mask at 0, stx_mnt_id at 144.
    let mut st = [0u64; 32];
    // SAFETY: a NUL-terminated path and a buffer of statx's size.
    let r = unsafe {
        syscall6(
            SYS_STATX,
            [
                AT_FDCWD as usize,
                c"/".as_ptr() as usize,
                0,
                STATX_MNT_ID as usize,
                st.as_mut_ptr() as usize,
                0,
            ],
        )
    };
    let mask = st[0] as u32;
    (r == 0 && mask & STATX_MNT_ID != 0).then_some(st[18])
}

/// The executable's GNU build ID, from its program headers as loaded;
/// `phdr` and `phnum` are where the program headers are and how many
/// (`AT_PHDR` and `AT_PHNUM` of the auxiliary vector).
pub(crate) fn build_id(phdr: usize, phnum: usize) -> Option<Bytes> {
    // Elf64_Phdr: p_type (u32) at 0, p_vaddr at 16, p_filesz at 32; 56
    // bytes each.
    let header = |i: usize| -> (u32, usize, usize) {
        let h = Bytes {
            ptr: (phdr + 56 * i) as *const u8,
            len: 56,
        };
        (
            le(h, 0, 4) as u32,
            le(h, 16, 8) as usize,
            le(h, 32, 8) as usize,
        )
    };
    let mut bias = None;
    let mut i = 0;
    while i < phnum {
        let (kind, vaddr, _) = header(i);
        if kind == PT_PHDR {
            bias = Some(phdr.wrapping_sub(vaddr));
        }
        i += 1;
    }
    let bias = bias?;
    let loaded = |start: usize, len: usize| {
        let mut i = 0;
        while i < phnum {
            let (kind, vaddr, filesz) = header(i);
            if kind == PT_LOAD && start >= vaddr && start + len <= vaddr + filesz {
                return true;
            }
            i += 1;
        }
        false
    };
    let mut i = 0;
    while i < phnum {
        let (kind, vaddr, filesz) = header(i);
        i += 1;
        if kind != PT_NOTE || !loaded(vaddr, filesz) {
            continue;
        }
        let notes = Bytes {
            ptr: bias.wrapping_add(vaddr) as *const u8,
            len: filesz,
        };
        let mut at = 0;
        while at + 12 <= notes.len {
            let (namesz, descsz, kind) = (
                le(notes, at, 4) as usize,
                le(notes, at + 4, 4) as usize,
                le(notes, at + 8, 4) as u32,
            );
            let desc_at = at + 12 + namesz.div_ceil(4) * 4;
            let end = desc_at + descsz.div_ceil(4) * 4;
            if end > notes.len {
                break;
            }
            if kind == NT_GNU_BUILD_ID
                && namesz == 4
                && notes.from(at + 12).starts_with(Bytes::of(b"GNU\0"))
                && descsz > 0
                && descsz < 256
            {
                return Some(notes.from(desc_at).take(descsz));
            }
            at = end;
        }
    }
    None
}
