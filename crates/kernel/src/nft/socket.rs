//! [`NftSocket`]: an in-process NETLINK_NETFILTER socket for set elements,
//! tables and sets.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

use super::decode::{decode_elements, decode_set, decode_table, RawElement, SetInfo};
use super::diagnose::nack_error;
use super::element::Element;
use super::encode::{check_netloom_table, encode_batch, encode_request};
use super::error::NftError;
use super::msg::*;
use super::{Batch, BatchOp, SetRef, TableRef};

/// Largest datagram read at once; dump answers fit well within it.
const RECV_BUF: usize = 64 * 1024;
/// How long to wait for an answer before giving up (a safety net: the
/// kernel answers nf_tables requests before `send` returns).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Set in dump answers when the ruleset changed while dumping.
const NLM_F_DUMP_INTR: u16 = 0x10;
const DUMP_RETRIES: usize = 10;

/// An nf_tables netlink socket, bound to the network namespace it was
/// opened in (it keeps that namespace whatever thread uses it later).
///
/// Every mutating call is one nf_tables transaction: it applies whole or
/// not at all. Not shareable between threads at once (`&mut self`), but
/// it can be moved to another thread.
pub struct NftSocket {
    sock: Socket,
    seq: u32,
    sndbuf: usize,
    /// Whether a committed batch removed something: closing the socket
    /// then waits for the kernel to free it (see [`Drop`] below).
    removed: bool,
}

/// A request that the kernel answered with an error, or that failed.
enum ReqError {
    Nack(NlError),
    Other(NftError),
}

impl NftSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NftError> {
        let ctx = "nft: open netlink socket (NETLINK_NETFILTER)";
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| NftError::io(ctx, e))?;
        sock.bind_auto().map_err(|e| NftError::io(ctx, e))?;
        // Both are optional refinements: extended acks name the offending
        // element, capped acks keep error replies small.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        let fd = sock.as_raw_fd();
        let tv = libc::timeval {
            tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        setsockopt(fd, libc::SO_RCVTIMEO, &tv).map_err(|e| NftError::io(ctx, e))?;
        let sndbuf = getsockopt_int(fd, libc::SO_SNDBUF).unwrap_or(0).max(0) as usize;
        Ok(NftSocket {
            sock,
            seq: 0,
            sndbuf,
            removed: false,
        })
    }

    /// Opens a socket in the network namespace at `netns` (e.g.
    /// `/run/netns/NAME` or `/proc/PID/ns/net`). The namespace is entered
    /// on a short-lived thread of its own; the caller's stays where it is.
    pub fn open_in(netns: &Path) -> Result<Self, NftError> {
        let path = netns.to_path_buf();
        let pin = crate::netns::PinToThisCpu::new();
        let thread = std::thread::Builder::new()
            .name("netloom-nft-open".into())
            .spawn(move || {
                let ns = File::open(&path).map_err(|source| NftError::Namespace {
                    path: path.clone(),
                    source,
                })?;
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| NftError::Namespace {
                    path: path.clone(),
                    source: e.into(),
                })?;
                NftSocket::open()
            })
            .map_err(|e| NftError::io("nft: start a thread to enter the network namespace", e))?;
        drop(pin);
        thread.join().map_err(|_| {
            NftError::io(
                "nft: open socket in network namespace",
                io::Error::other("thread panicked"),
            )
        })?
    }

    /// Applies every operation of `batch` in one transaction: all or none.
    /// The error names the first failing operation, its element when the
    /// kernel points at one, and the cause.
    pub fn commit(&mut self, batch: &Batch) -> Result<(), NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        let enc = encode_batch(&batch.ops, self.next_seq())?;
        self.removed |= batch.ops.iter().any(BatchOp::removes);
        self.seq = enc.end_seq;
        self.send(&enc.bytes, "nft: send batch")?;
        let last = enc.msgs.last().map_or(enc.end_seq, |m| m.seq);
        let mut first_failure: Option<NlError> = None;
        let mut overflowed = false;
        let mut buf = Vec::new();
        'replies: loop {
            // After an overflow the final ack may be lost; but the kernel has
            // queued every reply before `send` returned, so read what is left
            // without waiting.
            let flags = if overflowed { libc::MSG_DONTWAIT } else { 0 };
            match self.recv(&mut buf, flags) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    overflowed = true;
                    continue;
                }
                Err(e) if overflowed && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(reply_error("nft: commit batch", e)),
            }
            for m in messages(&buf) {
                let m = m.map_err(|d| NftError::protocol("nft: commit batch", d))?;
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let e = parse_error(&m).map_err(|d| NftError::protocol("nft: commit batch", d))?;
                if e.seq < enc.begin_seq || e.seq > enc.end_seq {
                    continue; // a stale answer to an earlier request
                }
                let done = e.seq == last
                    || (e.errno != 0 && (e.seq == enc.begin_seq || e.seq == enc.end_seq));
                if e.errno != 0 && first_failure.is_none() {
                    first_failure = Some(e);
                }
                if done {
                    break 'replies;
                }
            }
        }
        match first_failure {
            Some(f) => Err(self.batch_error(batch, &enc, f)),
            // Only errors are sent besides the final ack, so replies can
            // only have overflowed if something failed.
            None if overflowed => Err(NftError::Kernel {
                object: "nft batch".into(),
                action: format!("commit {} operations", batch.ops.len()),
                errno: Errno::ENOBUFS,
                cause: "the kernel's error replies overflowed the socket buffer \
                        (nothing in the batch was applied)"
                    .into(),
            }),
            None => Ok(()),
        }
    }

    /// Adds elements to a set or map (already present ones are fine).
    pub fn add_elements(&mut self, set: &SetRef, elements: &[Element]) -> Result<(), NftError> {
        self.commit(Batch::new().add(set, elements.iter().cloned()))
    }

    /// Adds elements; fails with `EEXIST` if one is already present.
    pub fn create_elements(&mut self, set: &SetRef, elements: &[Element]) -> Result<(), NftError> {
        self.commit(Batch::new().create(set, elements.iter().cloned()))
    }

    /// Deletes elements; fails with `ENOENT` if one is absent.
    pub fn delete_elements(&mut self, set: &SetRef, elements: &[Element]) -> Result<(), NftError> {
        self.commit(Batch::new().delete(set, elements.iter().cloned()))
    }

    /// Deletes elements, ignoring absent ones (Linux 6.3+).
    pub fn destroy_elements(&mut self, set: &SetRef, elements: &[Element]) -> Result<(), NftError> {
        self.commit(Batch::new().destroy(set, elements.iter().cloned()))
    }

    /// Removes every element of a set.
    pub fn flush_set(&mut self, set: &SetRef) -> Result<(), NftError> {
        self.commit(Batch::new().flush(set))
    }

    /// Deletes a netloom table (name starting with `netloom`) and all it
    /// holds; any other table is refused without asking the kernel.
    pub fn delete_table(&mut self, table: &TableRef) -> Result<(), NftError> {
        check_netloom_table(table)?;
        self.commit(Batch::new().delete_table(table))
    }

    /// Every table in the namespace, netloom's and others' (names and
    /// families only; nothing else of a foreign table is read).
    pub fn list_tables(&mut self) -> Result<Vec<TableRef>, NftError> {
        let decode = |m: &NlMsg<'_>, out: &mut Vec<TableRef>| {
            out.extend(decode_table(m)?);
            Ok(())
        };
        self.dump(NFT_MSG_GETTABLE, 0, &[], "nft: list tables", decode)
            .map_err(|e| match e {
                ReqError::Nack(n) => nack_error("nft tables", "list", &n, String::new()),
                ReqError::Other(e) => e,
            })
    }

    /// Whether a table exists.
    pub fn table_exists(&mut self, table: &TableRef) -> Result<bool, NftError> {
        let names = [(NFTA_TABLE_NAME, table.name.as_str())];
        match self.get(
            NFT_MSG_GETTABLE,
            table.family.nfproto(),
            &names,
            "nft: get table",
            |_| Ok(()),
        ) {
            Ok(()) => Ok(true),
            Err(ReqError::Nack(n)) if n.errno == libc::ENOENT => Ok(false),
            Err(ReqError::Nack(n)) => Err(nack_error(
                &table.to_string(),
                "get table",
                &n,
                String::new(),
            )),
            Err(ReqError::Other(e)) => Err(e),
        }
    }

    /// The shape of a set or map: flags, key and data types and lengths.
    pub fn set_info(&mut self, set: &SetRef) -> Result<SetInfo, NftError> {
        let names = [
            (NFTA_SET_TABLE, set.table.as_str()),
            (NFTA_SET_NAME, set.set.as_str()),
        ];
        let mut info = None;
        let res = self.get(
            NFT_MSG_GETSET,
            set.family.nfproto(),
            &names,
            "nft: get set",
            |m| {
                info = Some(decode_set(m)?);
                Ok(())
            },
        );
        match res {
            Ok(()) => info.ok_or_else(|| {
                NftError::protocol(format!("{set}: get set"), "no set in the answer")
            }),
            Err(ReqError::Nack(n)) => {
                let cause = self.missing_cause(set, n.errno).unwrap_or_default();
                Err(nack_error(&set.to_string(), "get set", &n, cause))
            }
            Err(ReqError::Other(e)) => Err(e),
        }
    }

    /// The elements of a set or map as the kernel stores them.
    pub fn list_raw_elements(&mut self, set: &SetRef) -> Result<Vec<RawElement>, NftError> {
        let names = [
            (NFTA_SET_ELEM_LIST_TABLE, set.table.as_str()),
            (NFTA_SET_ELEM_LIST_SET, set.set.as_str()),
        ];
        let ctx = format!("{set}: list elements");
        match self.dump(
            NFT_MSG_GETSETELEM,
            set.family.nfproto(),
            &names,
            &ctx,
            decode_elements,
        ) {
            Ok(out) => Ok(out),
            Err(ReqError::Nack(n)) => {
                let cause = self.missing_cause(set, n.errno).unwrap_or_default();
                Err(nack_error(&set.to_string(), "list elements", &n, cause))
            }
            Err(ReqError::Other(e)) => Err(e),
        }
    }

    /// The elements of a set or map, decoded with the set's own key and
    /// data types (see [`SetInfo::decode_all`]); ranges of interval sets
    /// come back as range elements.
    pub fn list_elements(&mut self, set: &SetRef) -> Result<Vec<Element>, NftError> {
        let info = self.set_info(set)?;
        let raw = self.list_raw_elements(set)?;
        Ok(info.decode_all(&raw))
    }

    fn next_seq(&mut self) -> u32 {
        if self.seq > u32::MAX / 2 {
            self.seq = 0;
        }
        self.seq + 1
    }

    fn send(&mut self, bytes: &[u8], ctx: &str) -> Result<(), NftError> {
        // The kernel refuses a datagram larger than the send buffer.
        if bytes.len() + 1024 > self.sndbuf {
            let want = (bytes.len() + 1024) as libc::c_int;
            let fd = self.sock.as_raw_fd();
            setsockopt(fd, libc::SO_SNDBUFFORCE, &want)
                .or_else(|_| setsockopt(fd, libc::SO_SNDBUF, &want))
                .map_err(|e| {
                    NftError::io(format!("{ctx}: grow the send buffer to {want} bytes"), e)
                })?;
            self.sndbuf = getsockopt_int(fd, libc::SO_SNDBUF).unwrap_or(0).max(0) as usize;
        }
        let sent = self.sock.send(bytes, 0).map_err(|e| NftError::io(ctx, e))?;
        if sent != bytes.len() {
            return Err(NftError::protocol(
                ctx,
                format!("sent {sent} of {} bytes", bytes.len()),
            ));
        }
        Ok(())
    }

    /// Reads one datagram into `buf`.
    fn recv(&self, buf: &mut Vec<u8>, flags: libc::c_int) -> io::Result<()> {
        buf.clear();
        buf.reserve(RECV_BUF);
        let n = self.sock.recv(buf, libc::MSG_TRUNC | flags)?;
        if n > buf.len() {
            return Err(io::Error::other(format!(
                "a {n}-byte answer did not fit the {}-byte buffer",
                buf.len()
            )));
        }
        Ok(())
    }

    /// A single-object request answered by one message and an ack.
    fn get(
        &mut self,
        ty: u16,
        family: u8,
        names: &[(u16, &str)],
        ctx: &str,
        mut on_msg: impl FnMut(&NlMsg<'_>) -> Result<(), String>,
    ) -> Result<(), ReqError> {
        let seq = self.next_seq();
        self.seq = seq;
        self.send(&encode_request(ty, NLM_F_ACK, seq, family, names), ctx)
            .map_err(ReqError::Other)?;
        self.answers(seq, ctx, |m| on_msg(m))
    }

    /// A dump request, decoding each answer with `decode`. Starts over
    /// when the ruleset changed during the dump.
    fn dump<T>(
        &mut self,
        ty: u16,
        family: u8,
        names: &[(u16, &str)],
        ctx: &str,
        decode: impl Fn(&NlMsg<'_>, &mut Vec<T>) -> Result<(), String>,
    ) -> Result<Vec<T>, ReqError> {
        for _ in 0..DUMP_RETRIES {
            let seq = self.next_seq();
            self.seq = seq;
            self.send(&encode_request(ty, NLM_F_DUMP, seq, family, names), ctx)
                .map_err(ReqError::Other)?;
            let mut interrupted = false;
            let mut out = Vec::new();
            self.answers(seq, ctx, |m| {
                interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                decode(m, &mut out)
            })?;
            if !interrupted {
                return Ok(out);
            }
        }
        Err(ReqError::Other(NftError::protocol(
            ctx,
            "the ruleset kept changing during the dump; try again",
        )))
    }

    /// Reads answers to request `seq` until its ack, `NLMSG_DONE` or error.
    fn answers(
        &mut self,
        seq: u32,
        ctx: &str,
        mut on_msg: impl FnMut(&NlMsg<'_>) -> Result<(), String>,
    ) -> Result<(), ReqError> {
        let mut buf = Vec::new();
        loop {
            self.recv(&mut buf, 0)
                .map_err(|e| ReqError::Other(reply_error(ctx, e)))?;
            for m in messages(&buf) {
                let m = m.map_err(|d| ReqError::Other(NftError::protocol(ctx, d)))?;
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR => {
                        let e = parse_error(&m)
                            .map_err(|d| ReqError::Other(NftError::protocol(ctx, d)))?;
                        return if e.errno == 0 {
                            Ok(())
                        } else {
                            Err(ReqError::Nack(e))
                        };
                    }
                    NLMSG_DONE => {
                        let code = m
                            .payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap()));
                        if code < 0 {
                            return Err(ReqError::Nack(NlError {
                                errno: -code,
                                seq,
                                message: None,
                                offset: None,
                            }));
                        }
                        return Ok(());
                    }
                    _ => {
                        on_msg(&m).map_err(|d| ReqError::Other(NftError::protocol(ctx, d)))?;
                    }
                }
            }
        }
    }

    /// Whether the kernel says `set` does not exist (a probe for error
    /// messages; other failures count as "not known to be missing").
    pub(super) fn set_missing(&mut self, set: &SetRef) -> bool {
        let names = [
            (NFTA_SET_TABLE, set.table.as_str()),
            (NFTA_SET_NAME, set.set.as_str()),
        ];
        let probe = self.get(
            NFT_MSG_GETSET,
            set.family.nfproto(),
            &names,
            "nft: get set",
            |_| Ok(()),
        );
        matches!(probe, Err(ReqError::Nack(n)) if n.errno == libc::ENOENT)
    }
}

fn reply_error(ctx: &str, e: io::Error) -> NftError {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        NftError::protocol(
            ctx,
            format!("no answer within {} s", REPLY_TIMEOUT.as_secs()),
        )
    } else {
        NftError::io(ctx, e)
    }
}

fn setsockopt<T>(fd: libc::c_int, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: libc::c_int, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and sized for an int option.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Drop for NftSocket {
    /// After a removal, the kernel makes the last `close` of an nf_tables
    /// socket wait for an RCU grace period before it returns (it frees the
    /// removed objects then). That socket is let go in a detached process
    /// instead; the change itself was complete when its commit returned.
    fn drop(&mut self) {
        if self.removed {
            crate::release::release_in_background(self.sock.as_raw_fd());
        }
    }
}

impl std::fmt::Debug for NftSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftSocket")
            .field("fd", &self.sock.as_raw_fd())
            .field("seq", &self.seq)
            .finish()
    }
}
