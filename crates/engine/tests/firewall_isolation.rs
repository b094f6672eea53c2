//! Isolation between networks, proven by traffic between sandboxes of two
//! bridges in one throwaway host. Needs root.

mod fw_support;

use std::net::SocketAddr;

use fw_support::traffic::*;
use fw_support::*;
use netloom_engine::firewall::Proto;

fn at(ip: impl Into<std::net::IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

#[test]
fn networks_are_isolated_unless_both_opt_out() {
    let Some(mut lab) = Lab::new() else { return };
    let mut a_net = lab.network(21, |_| {});
    let mut b_net = lab.network(22, |_| {});
    let a = lab.connected(&a_net, 2);
    let b = lab.connected(&b_net, 2);
    let _a = Server::tcp(&a.ns, 80, "a");
    let _b = Server::tcp(&b.ns, 80, "b");
    let a_sink = Server::udp(&a.ns, 7001, "a");
    let b_sink = Server::udp(&b.ns, 7001, "b");
    // Both sandboxes are alive and routed.
    let _outside = Server::tcp(&lab.outside, 7000, "outside");
    expect_reply("a -> outside", || tcp_ask(&a.ns, at(OUTSIDE4, 7000)));
    expect_reply("b -> outside", || tcp_ask(&b.ns, at(OUTSIDE4, 7000)));

    // One-way datagrams prove each direction on its own: one isolated
    // network must cut both by itself.
    let cut_both_ways = |why: &str| {
        for (from, sink, dst) in [
            (&a.ns, &b_sink, at(b.ip4(), 7001)),
            (&b.ns, &a_sink, at(a.ip4(), 7001)),
            (&a.ns, &b_sink, at(b.ip6(), 7001)),
            (&b.ns, &a_sink, at(a.ip6(), 7001)),
        ] {
            assert!(!delivered(from, sink, dst), "-> {dst}: {why}");
        }
    };
    cut_both_ways("both isolated");
    expect_silence("a -> b over TCP, both isolated", || {
        tcp_ask(&a.ns, at(b.ip4(), 80))
    });

    a_net.fw.isolate = false;
    lab.fw.create_network(&a_net.fw).unwrap();
    cut_both_ways("b still isolated");

    b_net.fw.isolate = false;
    lab.fw.create_network(&b_net.fw).unwrap();
    for (from, dst, tag) in [
        (&a.ns, at(b.ip4(), 80), "b"),
        (&b.ns, at(a.ip4(), 80), "a"),
        (&a.ns, at(b.ip6(), 80), "b"),
        (&b.ns, at(a.ip6(), 80), "a"),
    ] {
        let r = expect_reply(&format!("-> {dst}, neither isolated"), || {
            tcp_ask(from, dst)
        });
        assert_eq!(r.tag, tag);
    }

    a_net.fw.isolate = true;
    lab.fw.create_network(&a_net.fw).unwrap();
    cut_both_ways("a isolated again");
}

#[test]
fn published_ports_stay_reachable_from_an_isolated_network() {
    let Some(mut lab) = Lab::new() else { return };
    let a_net = lab.network(23, |_| {});
    let b_net = lab.network(24, |_| {});
    let mut a = lab.sandbox(&a_net, 2);
    a.ep.ports = vec![publish(None, 8080, 80, Proto::Tcp)];
    lab.fw.add_endpoint(&a_net.fw, &a.ep).unwrap();
    let b = lab.connected(&b_net, 2);
    let _a = Server::tcp(&a.ns, 80, "a");

    let r = expect_reply("b -> host address : a's published port", || {
        tcp_ask(&b.ns, at(HOST4, 8080))
    });
    assert_eq!(r.tag, "a");
    expect_silence("b -> a directly", || tcp_ask(&b.ns, at(a.ip4(), 80)));

    // An internal network reaches nothing outside, published ports included.
    let c_net = lab.network(25, |f| f.internal = true);
    let c = lab.connected(&c_net, 2);
    expect_silence("internal c -> host address : a's published port", || {
        tcp_ask(&c.ns, at(HOST4, 8080))
    });
}
