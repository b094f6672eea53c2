//! The firewall's kernel state, read back: skeletons re-apply without
//! duplicating rules or losing elements, endpoints leave nothing behind,
//! networks leave no table, clashes change nothing. Needs root; runs in
//! throwaway hosts.

mod fw_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use fw_support::*;
use netloom_engine::firewall::{
    guard_sets, port_maps, EndpointFirewall, MacAddr, NetworkFirewall, Proto,
};
use netloom_kernel::nft::{Element, ElementData, NftSocket, SetRef, Value};

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// `nft list table FAMILY NAME` in the lab's host.
fn listing(lab: &Lab, family: &str, table: &str) -> String {
    let out = lab
        .host
        .command("nft")
        .args(["list", "table", family, table])
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft list table {family} {table}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn tables(lab: &Lab) -> String {
    let out = lab
        .host
        .command("nft")
        .args(["list", "tables"])
        .output()
        .expect("run nft");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every element of the guard's sets and the network's maps, each once.
///
/// Kernel quirk: a dump of a large hash set spans several messages, and the
/// kernel walks the set afresh for each, skipping what it already sent; if
/// the set's hash table is resized in between (the kernel grows it in the
/// background after many inserts), elements come twice or not at all. So
/// read until two reads agree.
fn all_elements(lab: &Lab, id8: &str) -> Vec<(SetRef, Element)> {
    let mut nft = ok(NftSocket::open_in(lab.host.netns_path()));
    let mut read = || {
        let mut out = BTreeMap::new();
        for set in guard_sets().into_iter().chain(port_maps(id8)) {
            for e in ok(nft.list_elements(&set)) {
                out.insert((set.to_string(), e.to_string()), (set.clone(), e));
            }
        }
        out
    };
    let mut last = read();
    for _ in 0..10 {
        let next = read();
        if next == last {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        last = next;
    }
    last.into_values().collect()
}

/// Whether an element mentions the endpoint: its veth, an address of it
/// (raw IPv6 target bytes included) or one of its host ports.
fn mentions(e: &Element, ep: &EndpointFirewall) -> bool {
    let addrs: Vec<IpAddr> = [ep.ipv4.map(IpAddr::V4), ep.ipv6.map(IpAddr::V6)]
        .into_iter()
        .flatten()
        .collect();
    let data = match &e.data {
        Some(ElementData::Values(v)) => v.clone(),
        _ => Vec::new(),
    };
    e.key.iter().chain(&data).any(|v| match v {
        Value::Ifname(name) => *name == ep.veth,
        Value::Ipv4Addr(a) => addrs.contains(&IpAddr::V4(*a)),
        Value::Ipv6Addr(a) => addrs.contains(&IpAddr::V6(*a)),
        Value::Bytes(b) => addrs.iter().any(|a| match a {
            IpAddr::V6(a) => b.as_slice() == a.octets(),
            IpAddr::V4(_) => false,
        }),
        Value::InetService(p) => ep.ports.iter().any(|m| m.host_port == *p),
        _ => false,
    })
}

#[test]
fn reapplying_skeletons_keeps_elements_and_adds_no_rule() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(1, |_| {});
    let mut sb = lab.sandbox(&net, 2);
    sb.ep.ports = vec![
        publish(None, 8080, 80, Proto::Tcp),
        publish(Some(HOST4.into()), 8443, 443, Proto::Tcp),
        publish(Some(HOST6.into()), 8443, 443, Proto::Tcp),
        publish(None, 5353, 53, Proto::Udp),
        publish(None, 3868, 3868, Proto::Sctp),
    ];
    ok(lab.fw.add_endpoint(&net.fw, &sb.ep));
    assert_eq!(ok(lab.fw.missing_elements(&net.fw, &sb.ep)), vec![]);
    let table = net.fw.table_name();
    let before = listing(&lab, "inet", &table);
    let guard_before = listing(&lab, "bridge", "netloom-guard");
    assert!(before.contains("tcp . 8080 : 10.1.0.2 . 80"), "{before}");
    assert!(
        before.contains("2001:db8::1 . tcp . 8443 : fd00:1::2 . 443"),
        "{before}"
    );

    ok(lab.fw.create_network(&net.fw));
    ok(lab.fw.ensure_guard());
    ok(lab.fw.ensure_guard());
    assert_eq!(
        listing(&lab, "inet", &table),
        before,
        "network table changed"
    );
    assert_eq!(
        listing(&lab, "bridge", "netloom-guard"),
        guard_before,
        "guard table changed"
    );

    // New flags replace the rules and keep the elements.
    let mut open = net.fw.clone();
    open.isolate = false;
    ok(lab.fw.create_network(&open));
    let after = listing(&lab, "inet", &table);
    assert!(before.contains("oifname \"nlbr-*\""), "{before}");
    assert!(!after.contains("oifname \"nlbr-*\""), "{after}");
    assert_eq!(ok(lab.fw.missing_elements(&open, &sb.ep)), vec![]);
    assert_eq!(ok(lab.fw.network_ids()), vec![net.fw.id8.clone()]);
}

#[test]
fn remove_endpoint_leaves_no_element_of_it_and_can_repeat() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(2, |_| {});
    let mut one = lab.sandbox(&net, 2);
    let mut two = lab.sandbox(&net, 3);
    one.ep.ports = vec![
        publish(None, 8080, 80, Proto::Tcp),
        publish(Some(HOST4.into()), 5353, 53, Proto::Udp),
    ];
    two.ep.ports = vec![publish(None, 9090, 80, Proto::Tcp)];
    ok(lab.fw.add_endpoint(&net.fw, &one.ep));
    ok(lab.fw.add_endpoint(&net.fw, &two.ep));
    let everything = all_elements(&lab, &net.fw.id8);
    assert_eq!(everything.len(), 4 + 3 + 4 + 2, "{everything:#?}");
    assert!(everything.iter().any(|(_, e)| mentions(e, &one.ep)));

    ok(lab.fw.remove_endpoint(&net.fw, &one.ep));
    let left = all_elements(&lab, &net.fw.id8);
    let stale: Vec<_> = left.iter().filter(|(_, e)| mentions(e, &one.ep)).collect();
    assert!(stale.is_empty(), "left behind: {stale:#?}");
    assert_eq!(left.len(), 4 + 2, "{left:#?}");
    assert_eq!(ok(lab.fw.missing_elements(&net.fw, &two.ep)), vec![]);
    assert_eq!(ok(lab.fw.missing_elements(&net.fw, &one.ep)).len(), 7);
    assert_eq!(
        ok(lab.fw.guarded_ports()),
        BTreeSet::from([two.ep.veth.clone()])
    );

    ok(lab.fw.remove_endpoint(&net.fw, &one.ep));
    assert_eq!(
        all_elements(&lab, &net.fw.id8).len(),
        6,
        "removing twice is a no-op"
    );
}

#[test]
fn remove_network_leaves_no_table_and_its_endpoints_can_still_go() {
    let Some(mut lab) = Lab::new() else { return };
    let gone = lab.network(3, |_| {});
    let kept = lab.network(4, |_| {});
    let mut sb = lab.sandbox(&gone, 2);
    sb.ep.ports = vec![publish(None, 8080, 80, Proto::Tcp)];
    ok(lab.fw.add_endpoint(&gone.fw, &sb.ep));

    ok(lab.fw.remove_network(&gone.fw.id8));
    let listed = tables(&lab);
    assert!(!listed.contains(&gone.fw.table_name()), "{listed}");
    assert!(listed.contains(&kept.fw.table_name()), "{listed}");
    assert_eq!(ok(lab.fw.network_ids()), vec![kept.fw.id8.clone()]);
    ok(lab.fw.remove_network(&gone.fw.id8));

    // Its endpoint's guard facts remain until the endpoint goes.
    assert_eq!(ok(lab.fw.guarded_ports()).len(), 1);
    ok(lab.fw.remove_endpoint(&gone.fw, &sb.ep));
    assert!(ok(lab.fw.guarded_ports()).is_empty());

    ok(lab.fw.remove_network(&kept.fw.id8));
    ok(lab.fw.remove_guard());
    ok(lab.fw.remove_guard());
    assert!(!tables(&lab).contains("netloom"), "{}", tables(&lab));
    // Removing an endpoint when nothing is left is fine too.
    ok(lab.fw.remove_endpoint(&gone.fw, &sb.ep));
}

#[test]
fn a_clashing_host_port_is_refused_and_nothing_of_that_endpoint_lands() {
    let Some(mut lab) = Lab::new() else { return };
    let net = lab.network(5, |_| {});
    let mut one = lab.sandbox(&net, 2);
    let mut two = lab.sandbox(&net, 3);
    one.ep.ports = vec![publish(None, 8080, 80, Proto::Tcp)];
    two.ep.ports = vec![
        publish(None, 9000, 80, Proto::Tcp),
        publish(None, 8080, 80, Proto::Tcp),
    ];
    ok(lab.fw.add_endpoint(&net.fw, &one.ep));
    let err = lab
        .fw
        .add_endpoint(&net.fw, &two.ep)
        .expect_err("host port 8080 is taken");
    let text = err.to_string();
    assert_eq!(err.raw_errno(), Some(libc::EEXIST), "{text}");
    assert!(
        text.starts_with("endpoint nlv-05030000 on network fe000005: add firewall elements"),
        "{text}"
    );
    assert!(
        text.contains("already published by another endpoint"),
        "{text}"
    );
    assert_eq!(
        ok(lab.fw.missing_elements(&net.fw, &two.ep)).len(),
        ok(two.ep.elements(&net.fw)).len(),
        "a refused endpoint must leave nothing"
    );
    assert_eq!(ok(lab.fw.missing_elements(&net.fw, &one.ep)), vec![]);
}

#[test]
fn endpoints_without_a_table_are_refused_with_a_fix() {
    let Some(mut lab) = Lab::new() else { return };
    let net = NetworkFirewall::new(
        "fe0000aa",
        "nlbr-fe0000aa",
        vec![ok("10.170.0.0/24".parse())],
    );
    let ep = EndpointFirewall {
        veth: "nlv-aa020000".into(),
        mac: MacAddr([2, 0, 0, 0, 0xaa, 2]),
        check_mac: true,
        ipv4: Some("10.170.0.2".parse().unwrap()),
        ipv6: None,
        ports: vec![],
    };
    let text = lab
        .fw
        .add_endpoint(&net, &ep)
        .expect_err("no table")
        .to_string();
    assert!(
        text.contains("create the network's firewall first"),
        "{text}"
    );
}

/// Many endpoints: all land, all go, and the cost per endpoint stays flat.
#[test]
fn many_endpoints_come_and_go_at_a_flat_cost() {
    let Some(mut lab) = Lab::new() else { return };
    const N: u16 = 600;
    let net = NetworkFirewall::new(
        "fe0000bb",
        "nlbr-fe0000bb",
        vec![ok("10.187.0.0/16".parse()), ok("fd00:bb::/64".parse())],
    );
    ok(lab.fw.create_network(&net));
    let endpoints: Vec<EndpointFirewall> = (0..N)
        .map(|i| {
            let [hi, lo] = (i + 2).to_be_bytes();
            EndpointFirewall {
                veth: format!("nlv-{i:08x}"),
                mac: MacAddr([2, 0, 0, 0xbb, hi, lo]),
                check_mac: true,
                ipv4: Some(std::net::Ipv4Addr::new(10, 187, hi, lo)),
                ipv6: Some(std::net::Ipv6Addr::new(0xfd00, 0xbb, 0, 0, 0, 0, 0, i + 2)),
                ports: vec![publish(None, 10000 + i, 80, Proto::Tcp)],
            }
        })
        .collect();
    let timed = |lab: &mut Lab, add: bool| -> Vec<Duration> {
        endpoints
            .iter()
            .map(|ep| {
                let start = Instant::now();
                if add {
                    ok(lab.fw.add_endpoint(&net, ep));
                } else {
                    ok(lab.fw.remove_endpoint(&net, ep));
                }
                start.elapsed()
            })
            .collect()
    };
    let adds = timed(&mut lab, true);
    let everything = all_elements(&lab, &net.id8);
    assert_eq!(everything.len(), usize::from(N) * 6);
    assert_eq!(ok(lab.fw.guarded_ports()).len(), usize::from(N));
    let removes = timed(&mut lab, false);
    assert!(all_elements(&lab, &net.id8).is_empty());

    let mean = |d: &[Duration]| d.iter().sum::<Duration>() / d.len() as u32;
    let tenth = usize::from(N / 10);
    eprintln!(
        "firewall cost per endpoint: add {:?} (first {tenth}: {:?}, last {tenth}: {:?}), remove {:?}",
        mean(&adds),
        mean(&adds[..tenth]),
        mean(&adds[adds.len() - tenth..]),
        mean(&removes),
    );
}
