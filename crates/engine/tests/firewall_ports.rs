//! Published ports, proven by traffic: from outside, from the host itself,
//! from a sandbox of the same network (hairpin), on both families, and gone
//! once the endpoint is removed. Needs root; runs in throwaway hosts.

mod fw_support;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use fw_support::traffic::*;
use fw_support::*;
use netloom_engine::firewall::Proto;
use netloom_kernel::Netns;

/// A named probe and the reply it must get.
type Check<'a> = (&'a str, Box<dyn Fn() -> Option<Reply> + 'a>, Reply);

fn at(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// Whether a TCP connection from `ns` to `dst` is refused at once (a reset
/// from the host itself: no DNAT leads anywhere).
fn refused(ns: &Netns, dst: SocketAddr) -> bool {
    ns.run(|| {
        TcpStream::connect_timeout(&dst, TIMEOUT)
            .err()
            .is_some_and(|e| e.kind() == ErrorKind::ConnectionRefused)
    })
    .expect("enter namespace")
}

fn reply(tag: &str, peer: impl Into<IpAddr>) -> Reply {
    Reply {
        tag: tag.into(),
        peer: peer.into(),
    }
}

#[test]
fn published_ports_reach_the_right_sandbox_from_everywhere_with_bridge_netfilter() {
    published_ports_reach_the_right_sandbox_from_everywhere(true);
}

#[test]
fn published_ports_reach_the_right_sandbox_from_everywhere_without_bridge_netfilter() {
    published_ports_reach_the_right_sandbox_from_everywhere(false);
}

/// Bridge netfilter changes the path of a DNAT back into the same bridge
/// (it stays a bridged frame); the rules must work either way.
fn published_ports_reach_the_right_sandbox_from_everywhere(bridge_netfilter: bool) {
    let Some(mut lab) = Lab::new() else { return };
    if let Err(why) = lab.bridge_netfilter(bridge_netfilter) {
        netloom_testhost::skip(why);
        return;
    }
    let net = lab.network(31, |_| {});
    let mut a1 = lab.sandbox(&net, 2);
    let mut a2 = lab.sandbox(&net, 3);
    a1.ep.ports = vec![
        publish(None, 8080, 80, Proto::Tcp),
        publish(None, 8053, 5353, Proto::Udp),
        publish(Some(HOST4.into()), 8082, 80, Proto::Tcp),
    ];
    a2.ep.ports = vec![publish(None, 9090, 80, Proto::Tcp)];
    lab.fw.add_endpoint(&net.fw, &a1.ep).unwrap();
    lab.fw.add_endpoint(&net.fw, &a2.ep).unwrap();
    let _servers = [
        Server::tcp(&a1.ns, 80, "a1"),
        Server::udp(&a1.ns, 5353, "a1"),
        Server::tcp(&a2.ns, 80, "a2"),
        Server::udp(&a2.ns, 5353, "a2"),
    ];
    let (gw4, gw6) = (net.gw4(), net.gw6());
    let out = &lab.outside;
    let host = &lab.host_ns;

    // (a) From outside: the sandbox sees the real client.
    let checks: [Check; 6] = [
        (
            "outside TCP/IPv4 8080",
            Box::new(|| tcp_ask(out, at(HOST4, 8080))),
            reply("a1", OUTSIDE4),
        ),
        (
            "outside TCP/IPv4 9090",
            Box::new(|| tcp_ask(out, at(HOST4, 9090))),
            reply("a2", OUTSIDE4),
        ),
        (
            "outside UDP/IPv4 8053",
            Box::new(|| udp_ask(out, at(HOST4, 8053))),
            reply("a1", OUTSIDE4),
        ),
        (
            "outside TCP/IPv6 8080",
            Box::new(|| tcp_ask(out, at(HOST6, 8080))),
            reply("a1", OUTSIDE6),
        ),
        (
            "outside UDP/IPv6 8053",
            Box::new(|| udp_ask(out, at(HOST6, 8053))),
            reply("a1", OUTSIDE6),
        ),
        (
            "outside TCP/IPv4 on the published host address",
            Box::new(|| tcp_ask(out, at(HOST4, 8082))),
            reply("a1", OUTSIDE4),
        ),
    ];
    for (what, ask, want) in checks {
        assert_eq!(expect_reply(what, ask), want, "{what}");
    }
    assert!(
        refused(out, at(HOST4, 8081)),
        "an unpublished port leads nowhere"
    );
    expect_silence("outside UDP 8054 (not published)", || {
        udp_ask(out, at(HOST4, 8054))
    });
    assert!(
        refused(out, at(HOST6, 8082)),
        "8082 is published on {HOST4} only"
    );

    // (b) From the host itself, to any of its addresses.
    for dst in [
        at(HOST4, 8080),
        at(gw4, 8080),
        at(HOST6, 8080),
        at(gw6, 8080),
    ] {
        let r = expect_reply(&format!("host -> {dst}"), || tcp_ask(host, dst));
        assert_eq!(r.tag, "a1", "host -> {dst}");
    }
    let r = expect_reply("host UDP -> 8053", || udp_ask(host, at(HOST4, 8053)));
    assert_eq!(r.tag, "a1");
    assert!(
        refused(host, at(gw4, 8082)),
        "8082 is published on {HOST4} only"
    );
    // Non-goal: loopback is not published (no route_localnet, no proxy).
    assert!(refused(host, at(Ipv4Addr::LOCALHOST, 8080)));

    // (c) Hairpin: a sandbox of the same network, through a host address;
    // masqueraded, so the answer comes back through the host.
    let hairpin: [(&str, &Netns, SocketAddr, Reply); 4] = [
        (
            "a2 -> host address",
            &a2.ns,
            at(HOST4, 8080),
            reply("a1", gw4),
        ),
        ("a2 -> gateway", &a2.ns, at(gw4, 8080), reply("a1", gw4)),
        (
            "a1 -> its own published port",
            &a1.ns,
            at(HOST4, 8080),
            reply("a1", gw4),
        ),
        (
            "a2 -> host address, IPv6",
            &a2.ns,
            at(HOST6, 8080),
            reply("a1", gw6),
        ),
    ];
    for (what, ns, dst, want) in hairpin {
        assert_eq!(expect_reply(what, || tcp_ask(ns, dst)), want, "{what}");
    }
    let r = expect_reply("a2 UDP -> host address", || {
        udp_ask(&a2.ns, at(HOST4, 8053))
    });
    assert_eq!(r, reply("a1", gw4));
}

#[test]
fn removed_endpoints_publish_nothing_and_others_keep_their_ports() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(32, |_| {});
    let mut a1 = lab.sandbox(&net, 2);
    let mut a2 = lab.sandbox(&net, 3);
    a1.ep.ports = vec![
        publish(None, 8080, 80, Proto::Tcp),
        publish(None, 8053, 5353, Proto::Udp),
    ];
    a2.ep.ports = vec![publish(None, 9090, 80, Proto::Tcp)];
    lab.fw.add_endpoint(&net.fw, &a1.ep).unwrap();
    lab.fw.add_endpoint(&net.fw, &a2.ep).unwrap();
    let _servers = [
        Server::tcp(&a1.ns, 80, "a1"),
        Server::udp(&a1.ns, 5353, "a1"),
        Server::tcp(&a2.ns, 80, "a2"),
    ];
    let out = &lab.outside;
    expect_reply("8080 before removal", || tcp_ask(out, at(HOST4, 8080)));
    expect_reply("8053 before removal", || udp_ask(out, at(HOST4, 8053)));

    lab.fw.remove_endpoint(&net.fw, &a1.ep).unwrap();
    assert!(
        refused(out, at(HOST4, 8080)),
        "the host answers 8080 itself now"
    );
    assert!(
        refused(out, at(HOST6, 8080)),
        "the host answers 8080 itself now"
    );
    expect_silence("8053 after removal", || udp_ask(out, at(HOST4, 8053)));
    let r = expect_reply("a2's port after a1's removal", || {
        tcp_ask(out, at(HOST4, 9090))
    });
    assert_eq!(r.tag, "a2");

    // Connecting again, with other ports, publishes those.
    a1.ep.ports = vec![publish(None, 8081, 80, Proto::Tcp)];
    lab.fw.add_endpoint(&net.fw, &a1.ep).unwrap();
    let r = expect_reply("a1's new port", || tcp_ask(out, at(HOST4, 8081)));
    assert_eq!(r, reply("a1", OUTSIDE4));
    assert!(
        refused(out, at(HOST4, 8080)),
        "the old port stays unpublished"
    );
}
