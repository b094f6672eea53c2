//! Forged frames, sent from inside a sandbox: an ARP request with a chosen
//! sender, and an IPv6 neighbour advertisement with a chosen target. These
//! are what a hostile sandbox would send to poison its neighbours' caches.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr};

use netloom_engine::firewall::MacAddr;
use netloom_kernel::Netns;

const ETH_P_ARP: u16 = 0x0806;

/// Sends an ARP request out of `eth0` in `ns`: Ethernet source `eth_src`,
/// "who has `target`? tell `sender_ip` at `sender_mac`", to broadcast.
pub fn send_arp_request(
    ns: &Netns,
    eth_src: MacAddr,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target: Ipv4Addr,
) {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&eth_src.octets());
    frame.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame.extend_from_slice(&sender_mac.octets());
    frame.extend_from_slice(&sender_ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    ns.run(|| send_frame(&frame))
        .expect("enter namespace")
        .unwrap_or_else(|e| panic!("send a raw ARP frame: {e}"));
}

fn send_frame(frame: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket calls on a descriptor owned by this function;
    // the address structure is zeroed and then filled in.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ARP.to_be()),
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let index = libc::if_nametoindex(c"eth0".as_ptr());
        let mut addr: libc::sockaddr_ll = zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ARP.to_be();
        addr.sll_ifindex = index as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let sent = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        );
        let result = if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        libc::close(fd);
        result
    }
}

/// Sends an unsolicited neighbour advertisement (override flag set) from
/// `src` to `dst` in `ns`: "`target` is at `mac`".
pub fn send_neighbour_advert(
    ns: &Netns,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    mac: MacAddr,
) {
    let mut msg = vec![136, 0, 0, 0, 0x20, 0, 0, 0]; // type, code, checksum, flags: O
    msg.extend_from_slice(&target.octets());
    msg.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    msg.extend_from_slice(&mac.octets());
    ns.run(|| send_icmpv6(src, dst, &msg))
        .expect("enter namespace")
        .unwrap_or_else(|e| panic!("send a neighbour advertisement: {e}"));
}

fn sockaddr6(ip: Ipv6Addr) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = ip.octets();
    sa
}

fn send_icmpv6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> io::Result<()> {
    let check = |rc: i64| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: plain socket calls on a descriptor owned by this function,
    // with pointers to live, correctly sized values. For ICMPv6 raw
    // sockets the kernel fills in the checksum.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let hops: libc::c_int = 255; // neighbour discovery demands it
        let len = size_of::<libc::sockaddr_in6>() as u32;
        let (s, d) = (sockaddr6(src), sockaddr6(dst));
        let result = check(i64::from(libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            (&hops as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )))
        .and_then(|()| {
            check(i64::from(libc::bind(
                fd,
                (&s as *const libc::sockaddr_in6).cast(),
                len,
            )))
        })
        .and_then(|()| {
            check(libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&d as *const libc::sockaddr_in6).cast(),
                len,
            ) as i64)
        });
        libc::close(fd);
        result
    }
}
