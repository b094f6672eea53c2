//! Which binary a process runs and where: what a command and the service
//! must share for the service to do the command's work.
//!
//! It is read on every served call, so it is read without `/proc`: the
//! first look-up of `/proc/self/...` in a new process builds that
//! process's entries there, and the four paths read before (the
//! executable and three namespaces) took some 50 µs of a call of about
//! 2 ms. The build ID is read from the process's own memory, the network
//! namespace from a socket the caller opens anyway, the mount namespace
//! from one `statx` of `/`. Where the kernel or the binary lacks what that
//! needs, the `/proc` way is used, and says so in the value (an identity
//! read one way never equals one read the other way).

use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use nix::libc;

/// The binary and namespaces a process runs with. A request is served only
/// by a service with the same: names of sandboxes and namespace paths are
/// resolved by the service as the command would resolve them.
///
/// The pid namespace is not part of it: `pid:N` is resolved through
/// `/proc/N`, and in one mount namespace that is one procfs for both.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub exe: Exe,
    pub netns: Netns,
    pub mounts: Mounts,
}

/// The executable.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Exe {
    /// Its GNU build ID: the linker's hash of what it linked, so two
    /// binaries with one build ID run the same code.
    BuildId(String),
    /// For a binary linked without one: device, inode, size and
    /// modification time (seconds, nanoseconds) of `/proc/self/exe`.
    File([u64; 5]),
}

/// The network namespace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// Its cookie (`SO_NETNS_COOKIE` of a socket the process opened): a
    /// number the kernel gives each namespace and never reuses while it
    /// runs.
    Cookie(u64),
    /// Before Linux 5.14: the inode of `/proc/self/ns/net`.
    Inode(u64),
}

/// The mount namespace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Mounts {
    /// The id of the mount `/` is on: a mount belongs to one namespace,
    /// and no two mounts that exist at once share an id.
    Root(u64),
    /// Before Linux 5.8: the inode of `/proc/self/ns/mnt`.
    Inode(u64),
}

impl Identity {
    /// This process's identity; `socket` is one it opened (the network
    /// namespace is the one a socket was opened in).
    pub fn of_this_process(socket: BorrowedFd<'_>) -> io::Result<Identity> {
        let exe = match build_id() {
            Some(id) => Exe::BuildId(id.iter().map(|b| format!("{b:02x}")).collect()),
            None => {
                let m = std::fs::metadata("/proc/self/exe")?;
                Exe::File([
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime() as u64,
                    m.mtime_nsec() as u64,
                ])
            }
        };
        let netns = match netns_cookie(socket)? {
            Some(c) => Netns::Cookie(c),
            None => Netns::Inode(std::fs::metadata("/proc/self/ns/net")?.ino()),
        };
        let mounts = match root_mount_id()? {
            Some(id) => Mounts::Root(id),
            None => Mounts::Inode(std::fs::metadata("/proc/self/ns/mnt")?.ino()),
        };
        Ok(Identity { exe, netns, mounts })
    }

    /// Why a request from `caller` cannot be served by a process with this
    /// identity, if it cannot.
    pub fn mismatch(&self, caller: &Identity) -> Option<String> {
        if self.exe != caller.exe {
            return Some(
                "it runs another netloom binary than the command; restart `netloom serve` with this one".into(),
            );
        }
        let kind = if self.netns != caller.netns {
            "network"
        } else if self.mounts != caller.mounts {
            "mount"
        } else {
            return None;
        };
        Some(format!(
            "it runs in another {kind} namespace than the command, where sandbox names and paths mean other things"
        ))
    }
}

/// `SO_NETNS_COOKIE` (asm-generic/socket.h; SPARC numbers it apart).
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_NETNS_COOKIE: libc::c_int = 71;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_NETNS_COOKIE: libc::c_int = 0x50;

/// The cookie of the network namespace `socket` was opened in; `None` when
/// the kernel has no such option (before 5.14).
fn netns_cookie(socket: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the option writes at most `len` bytes into `cookie`.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r == 0 && len as usize == std::mem::size_of::<u64>() {
        return Ok(Some(cookie));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOPROTOOPT) => Ok(None),
        _ if r == 0 => Ok(None),
        _ => Err(e),
    }
}

/// The id of the mount the root directory is on; `None` when `statx`
/// cannot tell it (before Linux 5.8).
fn root_mount_id() -> io::Result<Option<u64>> {
    // SAFETY: an all-zero statx is a valid value to be overwritten.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a buffer of the right type.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c"/".as_ptr(),
            0,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) => Ok(None),
            _ => Err(e),
        };
    }
    Ok((st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id))
}

/// The build ID of the running executable, from its `NT_GNU_BUILD_ID`
/// note as loaded; `None` when it has none.
pub fn build_id() -> Option<&'static [u8]> {
    static ID: std::sync::OnceLock<Option<&'static [u8]>> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        let mut found: Option<&'static [u8]> = None;
        // SAFETY: the callback only reads the program headers it is given
        // and, within loaded segments, the notes they point to.
        unsafe {
            libc::dl_iterate_phdr(
                Some(first_object_build_id),
                (&mut found as *mut Option<&'static [u8]>).cast(),
            );
        }
        found
    })
}

/// `dl_iterate_phdr` callback: reads the build ID of the first object (the
/// executable) into `data` and stops.
unsafe extern "C" fn first_object_build_id(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the C library passes a valid `info`, and `data` is the
    // `Option` `build_id` handed over.
    let (info, found) = unsafe { (&*info, &mut *data.cast::<Option<&'static [u8]>>()) };
    if info.dlpi_phdr.is_null() {
        return 1;
    }
    // SAFETY: `dlpi_phnum` headers start at `dlpi_phdr`.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let base = info.dlpi_addr as usize;
    let loaded = |start: usize, len: usize| {
        headers.iter().any(|h| {
            h.p_type == libc::PT_LOAD
                && start >= h.p_vaddr as usize
                && start + len <= (h.p_vaddr + h.p_filesz) as usize
        })
    };
    for h in headers.iter().filter(|h| h.p_type == libc::PT_NOTE) {
        let (start, len) = (h.p_vaddr as usize, h.p_filesz as usize);
        if !loaded(start, len) {
            continue;
        }
        // SAFETY: inside a loaded segment of this object, which stays
        // mapped while the process runs.
        let notes: &'static [u8] =
            unsafe { std::slice::from_raw_parts((base + start) as *const u8, len) };
        if let Some(id) = gnu_build_id(notes) {
            *found = Some(id);
            break;
        }
    }
    // The executable is the first object; the others are not asked.
    1
}

/// The descriptor of the `NT_GNU_BUILD_ID` note among `notes` (an ELF
/// note section's bytes), if there is one.
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let pad = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0), word(notes, 4), word(notes, 8));
        let desc_at = 12 + pad(namesz);
        let end = desc_at.checked_add(pad(descsz))?;
        if end > notes.len() {
            return None;
        }
        if kind as u32 == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" && descsz > 0 {
            return Some(&notes[desc_at..desc_at + descsz]);
        }
        notes = &notes[end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn mine() -> Identity {
        let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
        Identity::of_this_process(s.as_fd()).unwrap()
    }

    #[test]
    fn identities_differ_by_binary_and_by_namespace() {
        let me = mine();
        assert_eq!(me.mismatch(&me.clone()), None);
        assert_eq!(me.mismatch(&mine()), None);
        let mut other = me.clone();
        other.exe = Exe::File([1, 2, 3, 4, 5]);
        assert!(me
            .mismatch(&other)
            .unwrap()
            .contains("another netloom binary"));
        let mut other = me.clone();
        other.netns = Netns::Inode(1);
        let why = me.mismatch(&other).unwrap();
        assert!(why.contains("another network namespace"), "{why}");
        let mut other = me.clone();
        other.mounts = Mounts::Inode(1);
        let why = me.mismatch(&other).unwrap();
        assert!(why.contains("another mount namespace"), "{why}");
    }

    /// The build ID read from memory is the one in the file on disk.
    #[test]
    fn the_build_id_is_the_one_the_file_carries() {
        let Some(id) = build_id() else {
            panic!("this test binary has no build ID; link with --build-id");
        };
        assert!(id.len() >= 8, "{id:?}");
        let file = std::fs::read("/proc/self/exe").unwrap();
        let mut note = Vec::new();
        for w in [4u32, id.len() as u32, 3] {
            note.extend_from_slice(&w.to_ne_bytes());
        }
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(id);
        assert!(
            file.windows(note.len()).any(|w| w == note.as_slice()),
            "the file has no note with build ID {id:02x?}"
        );
    }

    #[test]
    fn notes_are_walked_to_the_build_id() {
        let mut notes = Vec::new();
        let mut push = |kind: u32, name: &[u8], desc: &[u8]| {
            for w in [name.len() as u32, desc.len() as u32, kind] {
                notes.extend_from_slice(&w.to_ne_bytes());
            }
            notes.extend_from_slice(name);
            notes.resize(notes.len().div_ceil(4) * 4, 0);
            notes.extend_from_slice(desc);
            notes.resize(notes.len().div_ceil(4) * 4, 0);
        };
        push(1, b"GNU\0", &[0; 16]); // an ABI tag
        push(3, b"Go\0", b"abc"); // a build ID of another kind
        push(3, b"GNU\0", &[7, 8, 9, 10, 11]);
        assert_eq!(gnu_build_id(&notes), Some(&[7u8, 8, 9, 10, 11][..]));
        assert_eq!(gnu_build_id(&notes[..notes.len() - 4]), None);
        assert_eq!(gnu_build_id(&[]), None);
    }
}
