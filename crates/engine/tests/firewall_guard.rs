//! The anti-spoofing guard, proven by traffic: forged sources, MACs, ARP
//! senders and neighbour advertisements are dropped, real traffic, IPv6
//! link-local traffic and duplicate address detection pass. Each refusal is
//! checked against a control (the same frame passes once the guard table
//! is gone), so the guard is shown to be what stops it. Needs root.

mod fw_support;

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use fw_support::raw::{send_arp_request, send_neighbour_advert};
use fw_support::traffic::*;
use fw_support::*;
use netloom_engine::firewall::MacAddr;
use netloom_kernel::{AddressOptions, IpPrefix, Netns};

const SINK: u16 = 6000;
/// Long enough for a datagram or frame to cross a bridge in a namespace.
const SETTLE: Duration = Duration::from_millis(300);

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Sends one datagram from `src` in `ns` to the sink and says whether the
/// sink saw it.
fn arrives(ns: &Netns, sink: &Server, src: IpAddr, dst: IpAddr) -> bool {
    let count = || sink.seen().iter().filter(|&&a| a == src).count();
    let before = count();
    udp_send_from(ns, src, SocketAddr::new(dst, SINK));
    eventually(SETTLE, || count() > before)
}

#[test]
fn forged_sources_and_macs_are_dropped_and_real_ones_pass() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(41, |_| {});
    let mut g1 = lab.sandbox(&net, 2);
    let g2 = lab.connected(&net, 3);
    let sink = Server::udp(&g2.ns, SINK, "g2");
    // Static neighbours: forged packets need no resolution to be sent.
    ok(g1.nl.add_neighbour(g1.eth0, g2.ip4().into(), g2.ep.mac));
    ok(g1.nl.add_neighbour(g1.eth0, g2.ip6().into(), g2.ep.mac));
    let (to4, to6): (IpAddr, IpAddr) = (g2.ip4().into(), g2.ip6().into());

    assert!(
        !arrives(&g1.ns, &sink, g1.ip4().into(), to4),
        "a port without facts sends nothing"
    );
    ok(lab.fw.add_endpoint(&net.fw, &g1.ep));
    assert!(
        arrives(&g1.ns, &sink, g1.ip4().into(), to4),
        "real IPv4 source"
    );
    assert!(
        arrives(&g1.ns, &sink, g1.ip6().into(), to6),
        "real IPv6 source"
    );

    let forged4: IpAddr = net.v4(77).into();
    let forged6: IpAddr = net.v6(0x77).into();
    ok(g1.nl.add_address(
        g1.eth0,
        ok(IpPrefix::new(forged4, 24).ok_or("prefix")),
        AddressOptions::default(),
    ));
    ok(g1.nl.add_address(
        g1.eth0,
        ok(IpPrefix::new(forged6, 64).ok_or("prefix")),
        AddressOptions::nodad(),
    ));
    assert!(!arrives(&g1.ns, &sink, forged4, to4), "forged IPv4 source");
    assert!(!arrives(&g1.ns, &sink, forged6, to6), "forged IPv6 source");

    let real_mac = g1.ep.mac;
    ok(g1.nl.set_mac(g1.eth0, MacAddr([0x02, 0, 0, 0, 41, 0xee])));
    // A new MAC flushes every neighbour entry, static ones too.
    ok(g1.nl.add_neighbour(g1.eth0, g2.ip4().into(), g2.ep.mac));
    ok(g1.nl.add_neighbour(g1.eth0, g2.ip6().into(), g2.ep.mac));
    assert!(
        !arrives(&g1.ns, &sink, g1.ip4().into(), to4),
        "forged MAC, IPv4"
    );
    assert!(
        !arrives(&g1.ns, &sink, g1.ip6().into(), to6),
        "forged MAC, IPv6"
    );
    ok(g1.nl.set_mac(g1.eth0, real_mac));
    assert!(
        arrives(&g1.ns, &sink, g1.ip4().into(), to4),
        "the real MAC passes again"
    );

    // Control: without the guard the very same forged packets get through.
    ok(lab.fw.remove_guard());
    assert!(
        arrives(&g1.ns, &sink, forged4, to4),
        "control: forged IPv4 without the guard"
    );
    assert!(
        arrives(&g1.ns, &sink, forged6, to6),
        "control: forged IPv6 without the guard"
    );
}

#[test]
fn forged_arp_and_neighbour_advertisements_do_not_poison_the_host() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(42, |_| {});
    let g1 = lab.connected(&net, 2);
    let g2 = lab.connected(&net, 3);
    let _g2 = Server::tcp(&g2.ns, 80, "g2");
    let (m1, m2) = (g1.ep.mac, g2.ep.mac);
    let (g2_ip4, g2_ip6): (IpAddr, IpAddr) = (g2.ip4().into(), g2.ip6().into());
    // By default the host ignores ARP that would change an entry updated
    // less than a second ago; that would hide a forged ARP getting through.
    let locktime = format!("net/ipv4/neigh/{}/locktime", net.fw.bridge);
    ok(lab.host_ns.write_sysctl(&locktime, "0"));

    // The frames are well made: an honest ARP request teaches the host.
    send_arp_request(&g1.ns, m1, m1, g1.ip4(), net.gw4());
    assert!(
        eventually(SETTLE, || lab.neighbour_mac(&net, g1.ip4().into())
            == Some(m1)),
        "an honest ARP request must reach the host"
    );
    // The host learns g2's real MACs.
    expect_reply("host -> g2 over IPv4", || {
        tcp_ask(&lab.host_ns, SocketAddr::new(g2_ip4, 80))
    });
    expect_reply("host -> g2 over IPv6", || {
        tcp_ask(&lab.host_ns, SocketAddr::new(g2_ip6, 80))
    });
    assert_eq!(lab.neighbour_mac(&net, g2_ip4), Some(m2));
    assert_eq!(lab.neighbour_mac(&net, g2_ip6), Some(m2));

    let forge = || {
        // "g2's IPv4 address is at g1's MAC", as an ARP request to the host.
        send_arp_request(&g1.ns, m1, m1, g2.ip4(), net.gw4());
        // "g2's IPv6 address is at g1's MAC", from g1's own address.
        send_neighbour_advert(&g1.ns, g1.ip6(), net.gw6(), g2.ip6(), m1);
    };
    forge();
    std::thread::sleep(SETTLE);
    assert_eq!(
        lab.neighbour_mac(&net, g2_ip4),
        Some(m2),
        "ARP poisoning got through"
    );
    assert_eq!(
        lab.neighbour_mac(&net, g2_ip6),
        Some(m2),
        "NA poisoning got through"
    );
    // An ARP sender MAC other than the port's own is refused too.
    send_arp_request(&g1.ns, m1, m2, g1.ip4(), net.gw4());
    std::thread::sleep(SETTLE);
    assert_eq!(
        lab.neighbour_mac(&net, g1.ip4().into()),
        Some(m1),
        "forged ARP sender MAC got through"
    );

    // Control: without the guard the same frames poison the host.
    ok(lab.fw.remove_guard());
    forge();
    assert!(
        eventually(SETTLE, || lab.neighbour_mac(&net, g2_ip4) == Some(m1)),
        "control: forged ARP without the guard"
    );
    assert!(
        eventually(SETTLE, || lab.neighbour_mac(&net, g2_ip6) == Some(m1)),
        "control: forged NA without the guard"
    );
}

#[test]
fn link_local_traffic_and_duplicate_address_detection_pass_the_guard() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(43, |_| {});
    let mut g1 = lab.connected(&net, 2);
    let mut g2 = lab.connected(&net, 3);
    let _g2 = Server::tcp(&g2.ns, 80, "g2");

    let (ll1, ll2) = (
        wait_link_local(&mut g1.nl, g1.eth0),
        wait_link_local(&mut g2.nl, g2.eth0),
    );
    let dst = SocketAddr::V6(SocketAddrV6::new(ll2, 80, 0, g1.eth0));
    let r = expect_reply("g1 -> g2 over link-local addresses", || {
        tcp_ask(&g1.ns, dst)
    });
    assert_eq!(r.peer, ll1);
    let r = expect_reply("g1 -> g2 over global IPv6", || {
        tcp_ask(&g1.ns, SocketAddr::new(g2.ip6().into(), 80))
    });
    assert_eq!(r.peer, g1.ip6());

    // g1 tries to take g2's address with DAD on: its solicitation from `::`
    // must pass the guard, and g2's answer must reach it.
    ok(g1.ns.write_sysctl("net/ipv6/conf/eth0/accept_dad", "1"));
    let taken = ok(IpPrefix::new(g2.ip6().into(), 64).ok_or("prefix"));
    ok(g1.nl.add_address(g1.eth0, taken, AddressOptions::default()));
    let eth0 = g1.eth0;
    let failed = eventually(Duration::from_secs(4), || {
        ok(g1.nl.list_addresses(Some(eth0)))
            .iter()
            .any(|a| a.prefix == taken && a.dad_failed)
    });
    assert!(failed, "DAD must find g2's address taken");
}
