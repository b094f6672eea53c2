//! [`Netlink`]: a synchronous route-netlink socket bound to one namespace.
//!
//! Requests are serialised into a reusable buffer, sent, and answered by
//! reading replies into another reusable buffer until the kernel's ACK,
//! error or end-of-dump arrives. Errors carry the kernel's errno and, when
//! it sent one, its extended-ack message.

use netlink_packet_core::{Emitable, ParseableParametrized};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{Error, ErrorKind, Result};
use crate::netns::Netns;
use crate::nft::msg::{messages, NlMsg};

// Netlink message header flags and types (linux/netlink.h).
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLMSGERR_ATTR_MSG: u16 = 1;
const HEADER_LEN: usize = 16;

/// Receive buffer size. The kernel caps one dump datagram at 32 KiB, so a
/// 64 KiB buffer never truncates.
const RX_LEN: usize = 64 * 1024;

/// How often a dump is restarted when the kernel says it was interrupted
/// by a concurrent change (`NLM_F_DUMP_INTR`).
const DUMP_RETRIES: usize = 5;

/// A route-netlink socket bound to one network namespace.
///
/// Cheap to keep and reuse; every call is one synchronous request. Make one
/// per namespace with [`Netlink::open_in`] (the socket is created on a
/// thread inside the namespace and keeps that namespace for its lifetime).
/// Not shareable between threads at once (`&mut self`); wrap it in a
/// `Mutex` or open one per thread.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
    tx: Vec<u8>,
    rx: Vec<u8>,
    netns: String,
    /// While [`Netlink::batch`] collects requests: each request written
    /// into `tx`.
    pub(crate) batched: Option<Vec<Batched>>,
    /// Whether the next request may find its object already there
    /// ([`Netlink::add_route_unless_one_exists`]).
    pub(crate) exists_is_done: bool,
}

/// A request in a batch: its sequence number, its description, and
/// whether `EEXIST` counts as done.
#[derive(Debug)]
pub(crate) struct Batched {
    seq: u32,
    action: String,
    exists_is_done: bool,
}

/// Serialises `msg` with its netlink header onto the end of `buf`.
fn write_request(buf: &mut Vec<u8>, msg: &RouteNetlinkMessage, flags: u16, seq: u32) {
    let len = HEADER_LEN + msg.buffer_len();
    let start = buf.len();
    buf.resize(start + len, 0);
    let out = &mut buf[start..];
    out[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    out[4..6].copy_from_slice(&msg.message_type().to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    msg.emit(&mut out[HEADER_LEN..]);
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    ///
    /// Only for a process that really means its own namespace; code that
    /// works on sandboxes uses [`Netlink::open_in`].
    pub fn open_current() -> Result<Netlink> {
        Netlink::open_labelled("current netns".into())
    }

    /// Opens a socket inside `ns`.
    pub fn open_in(ns: &Netns) -> Result<Netlink> {
        Netlink::open_in_with_sysctls(ns, &[])
    }

    /// Opens a socket inside `ns` and, on the same trip into it, writes
    /// network sysctls there (keys as for [`Netns::write_sysctls`]).
    /// Nothing is opened if a write fails; the writes before it stay.
    ///
    /// The calling thread goes into `ns` for these system calls only and
    /// comes straight back (`netns::briefly_inside`); the socket
    /// keeps the namespace it was made in.
    pub fn open_in_with_sysctls(ns: &Netns, settings: &[(&str, &str)]) -> Result<Netlink> {
        let paths = crate::sysctl::sysctl_paths(settings, ns.label())?;
        let action = || format!("enter {}", ns.label());
        crate::netns::briefly_inside(ns, &action, || {
            crate::sysctl::write_opened_here(settings, &paths, ns.label())?;
            Netlink::open_labelled(ns.label().to_owned())
        })?
    }

    pub(crate) fn open_labelled(netns: String) -> Result<Netlink> {
        let action = || format!("open route netlink socket in {netns}");
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| Error::io(action(), e))?;
        socket.bind_auto().map_err(|e| Error::io(action(), e))?;
        // Extended acks carry the kernel's reason in words; capped acks keep
        // error replies small; strict checking enables kernel-side filters
        // on dumps (by interface, by table).
        socket
            .set_ext_ack(true)
            .map_err(|e| Error::io(action(), e))?;
        socket
            .set_cap_ack(true)
            .map_err(|e| Error::io(action(), e))?;
        socket
            .set_netlink_get_strict_chk(true)
            .map_err(|e| Error::io(action(), e))?;
        Ok(Netlink {
            socket,
            seq: 0,
            tx: Vec::with_capacity(1024),
            rx: Vec::with_capacity(RX_LEN),
            netns,
            batched: None,
            exists_is_done: false,
        })
    }

    /// The socket's descriptor, for a request sent by another process.
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }

    /// `msg` as a complete request that asks for no acknowledgement, for
    /// another process to send on this socket ([`Netlink::raw_fd`]).
    /// Nobody waits for an answer; an error reply carries a sequence
    /// number no request of this socket uses (they count up from 1), and
    /// is skipped.
    pub(crate) fn unacknowledged_request(msg: &RouteNetlinkMessage) -> Vec<u8> {
        let mut buf = Vec::new();
        write_request(&mut buf, msg, NLM_F_REQUEST, u32::MAX);
        buf
    }

    /// Which namespace this socket works in, for messages.
    pub fn netns_label(&self) -> &str {
        &self.netns
    }

    /// Makes the requests that `f` makes on this socket, which must all be
    /// ones answered by an acknowledgement only (setting links, adding
    /// addresses and routes), and sends them together in one message.
    ///
    /// The kernel carries them out in order, each whether or not one before
    /// it failed, and acknowledges each; the first failure, in request order,
    /// is returned with its description. One system call instead of one per
    /// request, and no return to this process between them: that is where a
    /// kernel worker the requests wake (the IPv4 address-lifetime check each
    /// added IPv4 address queues) gets to run and take the CPU, once per
    /// request before, once for the batch now.
    ///
    /// If `f` fails, nothing is sent. A request that is not a plain
    /// acknowledged one (a lookup, a dump) fails inside a batch.
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Netlink) -> Result<T>) -> Result<T> {
        if self.batched.is_some() {
            return Err(Error::invalid(
                format!("batch requests in {}", self.netns),
                "a batch is already being collected",
            ));
        }
        self.tx.clear();
        self.batched = Some(Vec::new());
        let made = f(self);
        let requests = self.batched.take().unwrap_or_default();
        let value = match made {
            Ok(value) => value,
            Err(e) => {
                self.tx.clear();
                return Err(e);
            }
        };
        if requests.is_empty() {
            return Ok(value);
        }
        let what = requests[0].action.clone();
        self.send_tx(&|| what.clone())?;
        self.collect_acks(&requests)?;
        Ok(value)
    }

    /// Sends `tx` to the kernel.
    fn send_tx(&mut self, action: &dyn Fn() -> String) -> Result<()> {
        let kernel = SocketAddr::new(0, 0);
        loop {
            match self.socket.send_to(&self.tx, &kernel, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(action(), e)),
            }
        }
    }

    /// Receives one datagram into `rx`; its length.
    fn recv_datagram(&mut self, action: &dyn Fn() -> String) -> Result<usize> {
        loop {
            self.rx.clear();
            match self.socket.recv(&mut self.rx, libc::MSG_TRUNC) {
                Ok(n) if n > self.rx.len() => {
                    return Err(protocol(
                        action,
                        format!("reply of {n} bytes was truncated"),
                    ))
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(action(), e)),
            }
        }
    }

    /// Reads the acknowledgements of `requests` (sent in one message);
    /// the first failure in request order.
    fn collect_acks(&mut self, requests: &[Batched]) -> Result<()> {
        let mut codes: Vec<Option<(i32, Option<String>)>> = vec![None; requests.len()];
        let mut left = requests.len();
        let first = requests[0].seq;
        let what = || requests[0].action.clone();
        while left > 0 {
            let n = self.recv_datagram(&what)?;
            for reply in messages(&self.rx[..n]) {
                let reply = reply.map_err(|why| protocol(&what, why))?;
                let Some(i) = reply.seq.checked_sub(first).map(|i| i as usize) else {
                    continue;
                };
                if reply.ty != NLMSG_ERROR || i >= requests.len() || codes[i].is_some() {
                    continue;
                }
                let code = read_i32(reply.payload)
                    .ok_or_else(|| protocol(&what, "short error message".into()))?;
                let detail = (code != 0)
                    .then(|| error_detail(reply.flags, &reply.payload[4..]))
                    .flatten();
                codes[i] = Some((code, detail));
                left -= 1;
            }
        }
        for (request, code) in requests.iter().zip(codes) {
            if let Some((code, detail)) = code {
                if code != 0 && !(request.exists_is_done && -code == libc::EEXIST) {
                    return Err(Error::os(request.action.clone(), -code, detail));
                }
            }
        }
        Ok(())
    }

    /// Sends a request that wants only an acknowledgement (or, inside
    /// [`Netlink::batch`], adds it to the batch).
    pub(crate) fn ack(
        &mut self,
        msg: &RouteNetlinkMessage,
        extra_flags: u16,
        action: impl Fn() -> String,
    ) -> Result<()> {
        if let Some(requests) = self.batched.as_mut() {
            self.seq = self.seq.wrapping_add(1).max(1);
            let flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
            write_request(&mut self.tx, msg, flags, self.seq);
            requests.push(Batched {
                seq: self.seq,
                action: action(),
                exists_is_done: std::mem::take(&mut self.exists_is_done),
            });
            return Ok(());
        }
        self.exchange(
            msg,
            NLM_F_REQUEST | NLM_F_ACK | extra_flags,
            &action,
            &mut |_| (),
        )
        .map(|_| ())
    }

    /// Sends a request that is answered by one object (or an error).
    pub(crate) fn get(
        &mut self,
        msg: &RouteNetlinkMessage,
        action: impl Fn() -> String,
    ) -> Result<RouteNetlinkMessage> {
        let mut reply = None;
        self.exchange(msg, NLM_F_REQUEST | NLM_F_ACK, &action, &mut |m| {
            reply.get_or_insert(m);
        })?;
        reply.ok_or_else(|| {
            Error::new(
                action(),
                ErrorKind::Protocol("kernel acknowledged but sent no object".into()),
            )
        })
    }

    /// Dumps a table; restarts when a concurrent change interrupted it.
    pub(crate) fn dump(
        &mut self,
        msg: &RouteNetlinkMessage,
        action: impl Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        for _ in 0..DUMP_RETRIES {
            out.clear();
            let interrupted =
                self.exchange(msg, NLM_F_REQUEST | NLM_F_DUMP, &action, &mut |m| {
                    out.push(m)
                })?;
            if !interrupted {
                return Ok(out);
            }
        }
        Err(Error::new(
            action(),
            ErrorKind::Protocol(format!(
                "dump interrupted by concurrent changes {DUMP_RETRIES} times in a row"
            )),
        ))
    }

    /// One request/response exchange. Returns whether a dump was marked
    /// interrupted.
    fn exchange(
        &mut self,
        msg: &RouteNetlinkMessage,
        flags: u16,
        action: &dyn Fn() -> String,
        sink: &mut dyn FnMut(RouteNetlinkMessage),
    ) -> Result<bool> {
        if self.batched.is_some() {
            return Err(Error::invalid(
                action(),
                "only requests answered by an acknowledgement can be batched",
            ));
        }
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        self.tx.clear();
        write_request(&mut self.tx, msg, flags, seq);
        self.send_tx(action)?;

        let mut interrupted = false;
        loop {
            let n = self.recv_datagram(action)?;
            for reply in messages(&self.rx[..n]) {
                let NlMsg {
                    ty: kind,
                    flags: msg_flags,
                    seq: msg_seq,
                    payload,
                } = reply.map_err(|why| protocol(action, why))?;
                if msg_seq != seq {
                    // A late reply to an earlier request; not ours.
                    continue;
                }
                match kind {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR => {
                        let code = read_i32(payload)
                            .ok_or_else(|| protocol(action, "short error message".into()))?;
                        if code == 0 {
                            return Ok(interrupted);
                        }
                        let detail = error_detail(msg_flags, &payload[4..]);
                        return Err(Error::os(action(), -code, detail));
                    }
                    NLMSG_DONE => match read_i32(payload) {
                        Some(code) if code < 0 => {
                            let detail = if msg_flags & NLM_F_ACK_TLVS != 0 {
                                extack_message(&payload[4..])
                            } else {
                                None
                            };
                            return Err(Error::os(action(), -code, detail));
                        }
                        _ => return Ok(interrupted),
                    },
                    NLMSG_OVERRUN => return Err(protocol(action, "kernel reports overrun".into())),
                    _ => {
                        interrupted |= msg_flags & NLM_F_DUMP_INTR != 0;
                        let parsed =
                            RouteNetlinkMessage::parse_with_param(payload, kind).map_err(|e| {
                                protocol(action, format!("cannot decode message type {kind}: {e}"))
                            })?;
                        sink(parsed);
                    }
                }
            }
        }
    }
}

fn protocol(action: &dyn Fn() -> String, why: String) -> Error {
    Error::new(action(), ErrorKind::Protocol(why))
}

fn read_i32(bytes: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(bytes.get(0..4)?.try_into().ok()?))
}

/// The extended-ack message of an error reply, whose payload (after the
/// error code) is the echoed request header, the rest of the request unless
/// capped, then attributes.
fn error_detail(flags: u16, after_code: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        HEADER_LEN
    } else {
        u32::from_ne_bytes(after_code.get(0..4)?.try_into().ok()?) as usize
    };
    extack_message(after_code.get((echoed + 3) & !3..)?)
}

/// Finds `NLMSGERR_ATTR_MSG` among netlink attributes.
fn extack_message(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &attrs[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or(text);
            let text = String::from_utf8_lossy(text).trim().to_owned();
            return (!text.is_empty()).then_some(text);
        }
        attrs = attrs.get((len + 3) & !3..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_extack_message_after_capped_header() {
        let mut payload = vec![0u8; HEADER_LEN];
        let text = b"Unknown device type\0";
        let attr_len = 4 + text.len();
        payload.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(
            error_detail(flags, &payload).as_deref(),
            Some("Unknown device type")
        );
        assert_eq!(error_detail(NLM_F_CAPPED, &payload), None);
    }
}
