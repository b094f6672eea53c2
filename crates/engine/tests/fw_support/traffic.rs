//! Tiny TCP and UDP servers and clients living in namespaces.
//!
//! A socket keeps the namespace it was made in, so servers bind on a
//! short-lived thread inside the namespace ([`Netns::run`]) and then serve
//! from an ordinary thread; clients make their socket and talk inside.
//! Every server answers `"<tag> <peer address>"`: which sandbox answered,
//! and the source address it saw.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use netloom_kernel::Netns;

/// How long a client waits for a connection or an answer.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// What a server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The server's tag.
    pub tag: String,
    /// The client address the server saw.
    pub peer: IpAddr,
}

/// A server thread; stops when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    seen: Arc<Mutex<Vec<IpAddr>>>,
}

impl Server {
    /// A TCP server on `[::]:port` (IPv4 too) in `ns`.
    pub fn tcp(ns: &Netns, port: u16, tag: &str) -> Server {
        let listener = ns
            .run(|| TcpListener::bind(any(port)))
            .expect("enter namespace")
            .unwrap_or_else(|e| panic!("bind TCP port {port}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        let tag = tag.to_string();
        Server::spawn(move |stop, seen| {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let peer = peer.ip().to_canonical();
                        seen.lock().unwrap().push(peer);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(format!("{tag} {peer}\n").as_bytes());
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        })
    }

    /// A UDP server on `[::]:port` (IPv4 too) in `ns`; answers every
    /// datagram and remembers its source.
    pub fn udp(ns: &Netns, port: u16, tag: &str) -> Server {
        let socket = ns
            .run(|| UdpSocket::bind(any(port)))
            .expect("enter namespace")
            .unwrap_or_else(|e| panic!("bind UDP port {port}: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let tag = tag.to_string();
        Server::spawn(move |stop, seen| {
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                match socket.recv_from(&mut buf) {
                    Ok((_, from)) => {
                        let peer = from.ip().to_canonical();
                        seen.lock().unwrap().push(peer);
                        let _ = socket.send_to(format!("{tag} {peer}\n").as_bytes(), from);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => {} // an ICMP error for an earlier answer
                }
            }
        })
    }

    fn spawn(
        serve: impl FnOnce(Arc<AtomicBool>, Arc<Mutex<Vec<IpAddr>>>) + Send + 'static,
    ) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = std::thread::spawn(move || serve(s, v));
        Server {
            stop,
            thread: Some(thread),
            seen,
        }
    }

    /// Every client address seen so far.
    pub fn seen(&self) -> Vec<IpAddr> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)
}

fn parse(text: &str) -> Option<Reply> {
    let (tag, peer) = text.trim().split_once(' ')?;
    Some(Reply {
        tag: tag.to_string(),
        peer: peer.parse().ok()?,
    })
}

/// One TCP exchange from `ns` to `dst`: `None` if it cannot connect or gets
/// no answer within [`TIMEOUT`].
pub fn tcp_ask(ns: &Netns, dst: SocketAddr) -> Option<Reply> {
    ns.run(|| {
        let mut conn = TcpStream::connect_timeout(&dst, TIMEOUT).ok()?;
        conn.set_read_timeout(Some(TIMEOUT)).ok()?;
        let mut text = String::new();
        conn.read_to_string(&mut text).ok()?;
        parse(&text)
    })
    .expect("enter namespace")
}

/// One UDP exchange from `ns` to `dst` (a connected socket, so an ICMP
/// "port unreachable" ends the wait at once).
pub fn udp_ask(ns: &Netns, dst: SocketAddr) -> Option<Reply> {
    ns.run(|| {
        let local = match dst {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => any(0),
        };
        let socket = UdpSocket::bind(local).ok()?;
        socket.connect(dst).ok()?;
        socket.set_read_timeout(Some(TIMEOUT)).ok()?;
        socket.send(b"who?").ok()?;
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).ok()?;
        parse(std::str::from_utf8(&buf[..n]).ok()?)
    })
    .expect("enter namespace")
}

/// Sends one UDP datagram from `src` (an address of the namespace) to
/// `dst`, without waiting for anything.
pub fn udp_send_from(ns: &Netns, src: IpAddr, dst: SocketAddr) {
    ns.run(|| {
        let socket = UdpSocket::bind(SocketAddr::new(src, 0))
            .unwrap_or_else(|e| panic!("bind UDP to {src}: {e}"));
        socket
            .send_to(b"hello", dst)
            .unwrap_or_else(|e| panic!("send from {src} to {dst}: {e}"));
    })
    .expect("enter namespace")
}

/// Sends one UDP datagram from `ns` to `dst`, where `sink` listens, and
/// says whether it arrived (one way: no answer needed).
pub fn delivered(ns: &Netns, sink: &Server, dst: SocketAddr) -> bool {
    let before = sink.seen().len();
    let src: IpAddr = match dst {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    udp_send_from(ns, src, dst);
    eventually(Duration::from_millis(300), || sink.seen().len() > before)
}

/// Tries `ask` up to three times (a first packet may wait for neighbour
/// resolution); panics with `what` if no answer comes.
pub fn expect_reply(what: &str, mut ask: impl FnMut() -> Option<Reply>) -> Reply {
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(reply) = ask() {
            return reply;
        }
    }
    panic!("{what}: no answer, but it must get through");
}

/// Panics with `what` if `ask` gets an answer.
pub fn expect_silence(what: &str, ask: impl FnOnce() -> Option<Reply>) {
    if let Some(reply) = ask() {
        panic!("{what}: answered by {reply:?}, but it must not get through");
    }
}

/// Waits until `cond` holds, up to `limit`; whether it did.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
