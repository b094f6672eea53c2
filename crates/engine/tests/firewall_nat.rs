//! Masquerade and internal networks, proven by traffic between sandboxes
//! and an "outside" namespace joined to a throwaway host. Needs root.

mod fw_support;

use std::net::SocketAddr;

use fw_support::traffic::*;
use fw_support::*;
use netloom_engine::firewall::Proto;

fn at(ip: impl Into<std::net::IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

#[test]
fn sandboxes_reach_outside_masqueraded_on_both_families() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(11, |_| {});
    let sb = lab.connected(&net, 2);
    let _tcp = Server::tcp(&lab.outside, 7000, "outside");
    let _udp = Server::udp(&lab.outside, 7001, "outside");
    let _inside = Server::tcp(&sb.ns, 80, "sb");

    let r = expect_reply("sandbox -> outside, TCP/IPv4", || {
        tcp_ask(&sb.ns, at(OUTSIDE4, 7000))
    });
    assert_eq!(r.peer, HOST4, "the outside must see the host's address");
    let r = expect_reply("sandbox -> outside, TCP/IPv6", || {
        tcp_ask(&sb.ns, at(OUTSIDE6, 7000))
    });
    assert_eq!(r.peer, HOST6, "the outside must see the host's address");
    let r = expect_reply("sandbox -> outside, UDP/IPv4", || {
        udp_ask(&sb.ns, at(OUTSIDE4, 7001))
    });
    assert_eq!(r.peer, HOST4);

    // The outside has a route to the sandboxes, but a NAT network is not
    // routable from outside: only published ports lead in.
    expect_silence("outside -> NAT sandbox directly, IPv4", || {
        tcp_ask(&lab.outside, at(sb.ip4(), 80))
    });
    expect_silence("outside -> NAT sandbox directly, IPv6", || {
        tcp_ask(&lab.outside, at(sb.ip6(), 80))
    });
}

#[test]
fn a_routed_network_is_reachable_and_keeps_its_addresses() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(12, |f| f.masquerade = false);
    let sb = lab.connected(&net, 2);
    let _outside = Server::tcp(&lab.outside, 7000, "outside");
    let _inside = Server::tcp(&sb.ns, 80, "sb");

    let r = expect_reply("routed sandbox -> outside", || {
        tcp_ask(&sb.ns, at(OUTSIDE4, 7000))
    });
    assert_eq!(r.peer, sb.ip4(), "a routed network is not masqueraded");
    let r = expect_reply("outside -> routed sandbox", || {
        tcp_ask(&lab.outside, at(sb.ip4(), 80))
    });
    assert_eq!(
        r,
        Reply {
            tag: "sb".into(),
            peer: OUTSIDE4.into()
        }
    );
    let r = expect_reply("outside -> routed sandbox, IPv6", || {
        tcp_ask(&lab.outside, at(sb.ip6(), 80))
    });
    assert_eq!(r.peer, OUTSIDE6);
}

#[test]
fn an_internal_network_is_cut_off_both_ways_but_talks_inside() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(13, |f| f.internal = true);
    let one = lab.connected(&net, 2);
    let two = lab.connected(&net, 3);
    let _outside = Server::tcp(&lab.outside, 7000, "outside");
    let _one = Server::tcp(&one.ns, 80, "one");
    let _two = Server::tcp(&two.ns, 80, "two");

    let r = expect_reply("internal sandbox -> its neighbour, IPv4", || {
        tcp_ask(&one.ns, at(two.ip4(), 80))
    });
    assert_eq!(
        r,
        Reply {
            tag: "two".into(),
            peer: one.ip4().into()
        }
    );
    let r = expect_reply("internal sandbox -> its neighbour, IPv6", || {
        tcp_ask(&one.ns, at(two.ip6(), 80))
    });
    assert_eq!(r.peer, one.ip6());

    // One-way datagrams, so each direction is proven cut on its own.
    let out_sink = Server::udp(&lab.outside, 7001, "outside");
    let in_sink = Server::udp(&one.ns, 7001, "one");
    for dst in [at(OUTSIDE4, 7001), at(OUTSIDE6, 7001)] {
        assert!(
            !delivered(&one.ns, &out_sink, dst),
            "internal sandbox -> outside {dst}"
        );
    }
    for dst in [at(one.ip4(), 7001), at(one.ip6(), 7001)] {
        assert!(
            !delivered(&lab.outside, &in_sink, dst),
            "outside -> internal sandbox {dst}"
        );
    }
    assert!(
        delivered(&two.ns, &in_sink, at(one.ip4(), 7001)),
        "the sink works"
    );
    expect_silence("internal sandbox -> outside, TCP", || {
        tcp_ask(&one.ns, at(OUTSIDE4, 7000))
    });

    let mut published = two.ep.clone();
    published.ports = vec![publish(None, 8080, 80, Proto::Tcp)];
    let err = lab
        .fw
        .add_endpoint(&net.fw, &published)
        .expect_err("an internal network publishes nothing")
        .to_string();
    assert!(err.contains("the network is internal"), "{err}");
}
