//! A bridge in a throwaway host, veth pairs into two child namespaces,
//! addresses, routes and neighbours: made over netlink, proven with
//! traffic, read back, deleted.

mod common;

use std::net::IpAddr;

use netloom_kernel::{AddressOptions, Family, IpPrefix, LinkSpec, MacAddr, Route, Scope};
use netloom_testhost::host_or_skip;

use common::{assert_no_ping, assert_ping, have_ping, host_netlink, named_netns};

fn p(s: &str) -> IpPrefix {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The addresses of one family on `link`, as text.
fn addresses_of(nl: &mut netloom_kernel::Netlink, link: u32, family: Family) -> Vec<String> {
    nl.list_addresses(Some(link))
        .unwrap()
        .into_iter()
        .filter(|a| a.prefix.addr().is_ipv6() == (family == Family::Ipv6))
        .map(|a| a.prefix.to_string())
        .collect()
}

#[test]
fn bridge_and_veth_pairs_carry_traffic() {
    let host = host_or_skip!();
    let (_host_ns, mut nl) = host_netlink(&host);
    let ns_a = named_netns(&host, "a");
    let ns_b = named_netns(&host, "b");

    // Bridge with a gateway address on each family.
    nl.create_bridge(&LinkSpec::new("br0").mtu(1400).up())
        .unwrap();
    let br = nl.link_index("br0").unwrap();
    // The ioctl lookup names the link the kernel describes by name.
    assert_eq!(Some(br), nl.get_link("br0").unwrap().map(|l| l.index));
    assert_eq!(nl.link_index("lo").unwrap(), 1);
    nl.add_address(br, p("10.77.0.1/24"), AddressOptions::default())
        .unwrap();
    nl.add_address(br, p("fd77::1/64"), AddressOptions::nodad())
        .unwrap();
    // An address reachable from the sandboxes only through their default route.
    let lo = nl.link_index("lo").unwrap();
    nl.add_address(lo, p("10.66.0.1/32"), AddressOptions::default())
        .unwrap();

    // Each sandbox: veth whose peer is born inside it, enslaved and up.
    let mac_a: MacAddr = "02:00:00:77:00:02".parse().unwrap();
    nl.create_veth(
        &LinkSpec::new("va").master(br).mtu(1400).up(),
        &LinkSpec::new("eth0").netns(&ns_a).mtu(1400).mac(mac_a),
    )
    .unwrap();
    nl.create_veth(
        &LinkSpec::new("vb").master(br).mtu(1400).up(),
        &LinkSpec::new("eth0").netns(&ns_b).mtu(1400),
    )
    .unwrap();

    let mut in_a = netloom_kernel::Netlink::open_in(&ns_a).unwrap();
    let mut in_b = netloom_kernel::Netlink::open_in(&ns_b).unwrap();
    let eth_a = in_a.link_index("eth0").unwrap();
    let eth_b = in_b.link_index("eth0").unwrap();
    // MACs as the kernel describes the links; none for loopback.
    let described = in_a.get_link("eth0").unwrap().unwrap().mac;
    assert_eq!(in_a.link_mac("eth0").unwrap(), described);
    assert_eq!(described, Some(mac_a));
    assert_eq!(
        nl.link_mac("va").unwrap(),
        nl.get_link("va").unwrap().unwrap().mac
    );
    assert_eq!(in_a.link_mac("lo").unwrap(), None);
    assert!(in_a.link_mac("nosuch").unwrap_err().is_not_found());
    // Looked up in each sandbox's own namespace: the host ends' peers.
    assert_eq!(nl.get_link("va").unwrap().unwrap().parent, Some(eth_a));
    assert_eq!(nl.get_link("vb").unwrap().unwrap().parent, Some(eth_b));
    for (nl, eth, last) in [(&mut in_a, eth_a, 2), (&mut in_b, eth_b, 3)] {
        let lo = nl.link_index("lo").unwrap();
        nl.set_up(lo, true).unwrap();
        nl.set_up(eth, true).unwrap();
        nl.add_address(
            eth,
            p(&format!("10.77.0.{last}/24")),
            AddressOptions::default(),
        )
        .unwrap();
        nl.add_address(eth, p(&format!("fd77::{last}/64")), AddressOptions::nodad())
            .unwrap();
    }

    // Read back the host side.
    let links = nl.list_links().unwrap();
    let bridge = links.iter().find(|l| l.name == "br0").expect("br0 listed");
    assert_eq!(bridge.kind.as_deref(), Some("bridge"));
    assert_eq!(bridge.mtu, 1400);
    assert!(bridge.up);
    for name in ["va", "vb"] {
        let port = links.iter().find(|l| l.name == name).expect("veth listed");
        assert_eq!(port.kind.as_deref(), Some("veth"));
        assert_eq!(port.master, Some(br), "{name} not enslaved to br0");
        assert!(port.up, "{name} not up");
    }
    assert!(
        links.iter().all(|l| l.name != "eth0"),
        "a peer landed in the host"
    );
    // The bridge floods multicast instead of snooping it.
    let snooping = host.enter(|| {
        std::fs::read_to_string("/sys/class/net/br0/bridge/multicast_snooping")
            .expect("br0's multicast_snooping in sysfs")
    });
    assert_eq!(snooping.trim(), "0", "br0 snoops multicast");

    // Read back the sandbox side.
    let eth = in_a.get_link("eth0").unwrap().expect("eth0 in a");
    assert_eq!(eth.kind.as_deref(), Some("veth"));
    assert_eq!(eth.mac, Some(mac_a));
    assert_eq!(eth.mtu, 1400);
    assert!(eth.up);
    let addrs = in_a.list_addresses(Some(eth_a)).unwrap();
    let v4 = addrs
        .iter()
        .find(|a| a.prefix == p("10.77.0.2/24"))
        .expect("v4 address");
    assert_eq!(v4.scope, Scope::Universe);
    let v6 = addrs
        .iter()
        .find(|a| a.prefix == p("fd77::2/64"))
        .expect("v6 address");
    assert!(v6.nodad && !v6.tentative && !v6.dad_failed, "{v6:?}");
    assert!(addrs.iter().all(|a| a.index == eth_a));

    // Routes: before the default route, the outside address is unreachable.
    let ping = have_ping(&host);
    if ping {
        assert_ping(&host, "a", "10.77.0.3");
        assert_ping(&host, "a", "fd77::3");
        assert_ping(&host, "b", "10.77.0.2");
        assert_ping(&host, "a", "10.77.0.1");
        assert_no_ping(&host, "a", "10.66.0.1");
    }
    in_a.add_route(&Route::default_via(ip("10.77.0.1")))
        .unwrap();
    in_a.add_route(&Route::default_via(ip("fd77::1"))).unwrap();
    in_a.add_route(&Route::via(p("10.88.0.0/24"), ip("10.77.0.1")).metric(50))
        .unwrap();
    in_a.add_route(&Route::on_link(p("10.99.0.0/24"), eth_a))
        .unwrap();
    if ping {
        assert_ping(&host, "a", "10.66.0.1");
        assert_no_ping(&host, "b", "10.66.0.1");
    }

    let v4_routes = in_a.list_routes(Family::Ipv4).unwrap();
    let default = v4_routes
        .iter()
        .find(|r| r.is_default())
        .expect("v4 default route");
    assert_eq!(default.gateway, Some(ip("10.77.0.1")));
    assert_eq!(default.dev, Some(eth_a));
    let via = v4_routes
        .iter()
        .find(|r| r.dst == p("10.88.0.0/24"))
        .expect("via route");
    assert_eq!((via.gateway, via.metric), (Some(ip("10.77.0.1")), Some(50)));
    let on_link = v4_routes
        .iter()
        .find(|r| r.dst == p("10.99.0.0/24"))
        .expect("dev route");
    assert_eq!(
        (on_link.gateway, on_link.dev, on_link.scope),
        (None, Some(eth_a), Scope::Link)
    );
    let connected = v4_routes
        .iter()
        .find(|r| r.dst == p("10.77.0.0/24"))
        .expect("kernel route");
    assert_eq!(
        connected.protocol, 2,
        "connected route should come from the kernel"
    );
    let v6_routes = in_a.list_routes(Family::Ipv6).unwrap();
    let default6 = v6_routes
        .iter()
        .find(|r| r.is_default())
        .expect("v6 default route");
    assert_eq!(default6.gateway, Some(ip("fd77::1")));
    assert!(v6_routes.iter().all(|r| r.dst.family() == Family::Ipv6));

    // A route that exists cannot be added twice; the error says what and why.
    let err = in_a
        .add_route(&Route::default_via(ip("10.77.0.1")))
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert!(
        err.to_string()
            .starts_with("add route default via 10.77.0.1: File exists (EEXIST)"),
        "{err}"
    );

    // Delete routes and see them gone.
    in_a.delete_route(&Route::default_via(ip("10.77.0.1")))
        .unwrap();
    in_a.delete_route(&Route::via(p("10.88.0.0/24"), ip("10.77.0.1")).metric(50))
        .unwrap();
    in_a.delete_route(&Route::on_link(p("10.99.0.0/24"), eth_a))
        .unwrap();
    let left = in_a.list_routes(Family::Ipv4).unwrap();
    assert!(
        left.iter()
            .all(|r| !r.is_default() && r.dst != p("10.88.0.0/24") && r.dst != p("10.99.0.0/24")),
        "{left:?}"
    );
    if ping {
        assert_no_ping(&host, "a", "10.66.0.1");
    }
    let err = in_a
        .delete_route(&Route::default_via(ip("10.77.0.1")))
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // Addresses: delete and see gone; traffic to it stops.
    in_b.delete_address(eth_b, p("10.77.0.3/24")).unwrap();
    let b_addrs = in_b.list_addresses(Some(eth_b)).unwrap();
    assert!(
        b_addrs.iter().all(|a| a.prefix != p("10.77.0.3/24")),
        "{b_addrs:?}"
    );
    if ping {
        assert_no_ping(&host, "a", "10.77.0.3");
    }

    // Deleting the host end removes the pair, peer included.
    nl.delete_link("vb").unwrap();
    assert!(nl.get_link("vb").unwrap().is_none());
    assert!(in_b.get_link("eth0").unwrap().is_none());
    let err = nl.delete_link("vb").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        err.to_string(),
        "delete link \"vb\": No such device (ENODEV)"
    );
}

#[test]
fn link_settings_change_and_read_back() {
    let host = host_or_skip!();
    let (_ns, mut nl) = host_netlink(&host);
    let ns = named_netns(&host, "s");
    nl.create_bridge(&LinkSpec::new("brx")).unwrap();
    let br = nl.link_index("brx").unwrap();
    assert!(
        !nl.get_link(br).unwrap().unwrap().up,
        "created down unless asked"
    );
    nl.create_veth(&LinkSpec::new("vx"), &LinkSpec::new("ex").netns(&ns))
        .unwrap();

    nl.set_master("vx", Some(br)).unwrap();
    nl.set_mtu("vx", 1280).unwrap();
    let mac: MacAddr = "02:11:22:33:44:55".parse().unwrap();
    nl.set_mac("vx", mac).unwrap();
    nl.set_up("vx", true).unwrap();
    let vx = nl.get_link("vx").unwrap().unwrap();
    assert_eq!(
        (vx.master, vx.mtu, vx.mac, vx.up),
        (Some(br), 1280, Some(mac), true)
    );

    nl.set_up(vx.index, false).unwrap();
    nl.set_master(vx.index, None).unwrap();
    let vx = nl.get_link(vx.index).unwrap().unwrap();
    assert_eq!((vx.master, vx.up), (None, false));

    // Errors name the operation, the object and the kernel's reason.
    let err = nl.create_bridge(&LinkSpec::new("brx")).unwrap_err();
    assert!(err.is_already_exists());
    assert!(
        err.to_string()
            .starts_with("create bridge \"brx\": File exists (EEXIST)"),
        "{err}"
    );
    let err = nl
        .create_bridge(&LinkSpec::new("a-name-far-too-long"))
        .unwrap_err();
    assert!(
        matches!(err.kind(), netloom_kernel::ErrorKind::InvalidInput(_)),
        "{err}"
    );
    let err = nl.set_mtu("nosuch", 1500).unwrap_err();
    assert!(err.is_not_found());
    assert!(
        err.to_string()
            .starts_with("set mtu of link \"nosuch\" to 1500: No such device (ENODEV)"),
        "{err}"
    );
    let err = nl.link_index("nosuch").unwrap_err();
    assert!(err.is_not_found());
    assert!(
        err.to_string().starts_with("find link \"nosuch\" in "),
        "{err}"
    );
    let err = nl.link_index("a-name-of-16-byt").unwrap_err();
    assert!(
        matches!(err.kind(), netloom_kernel::ErrorKind::InvalidInput(_)),
        "{err}"
    );

    // Moving a link to another namespace.
    nl.delete_link("vx").unwrap();
    assert!(nl.get_link("vx").unwrap().is_none());
    let err = nl
        .create_veth(&LinkSpec::new("vz"), &LinkSpec::new("ez").netns(&ns).up())
        .unwrap_err();
    assert!(
        matches!(err.kind(), netloom_kernel::ErrorKind::InvalidInput(_)),
        "{err}"
    );
    nl.create_veth(&LinkSpec::new("vy"), &LinkSpec::new("ey"))
        .unwrap();
    nl.set_netns("ey", &ns).unwrap();
    assert!(nl.get_link("ey").unwrap().is_none());
    let mut inside = netloom_kernel::Netlink::open_in(&ns).unwrap();
    assert_eq!(
        inside.get_link("ey").unwrap().unwrap().kind.as_deref(),
        Some("veth")
    );
    assert!(inside.get_link("ex").unwrap().is_none(), "ex went with vx");
}

#[test]
fn neighbours_add_list_delete() {
    let host = host_or_skip!();
    let (_ns, mut nl) = host_netlink(&host);
    nl.create_bridge(&LinkSpec::new("brn").up()).unwrap();
    let br = nl.link_index("brn").unwrap();
    let mac: MacAddr = "02:00:00:00:00:50".parse().unwrap();
    let v4 = ip("10.55.0.50");
    let v6 = ip("fd55::50");
    nl.add_neighbour(br, v4, mac).unwrap();
    nl.add_neighbour(br, v6, mac).unwrap();
    let list = nl.list_neighbours(Some(br)).unwrap();
    for addr in [v4, v6] {
        let n = list
            .iter()
            .find(|n| n.ip == addr)
            .unwrap_or_else(|| panic!("{addr} missing: {list:?}"));
        assert!(n.permanent);
        assert_eq!(n.mac, Some(mac));
        assert_eq!(n.index, br);
    }
    // Replace is allowed (a neighbour's MAC can change).
    let mac2: MacAddr = "02:00:00:00:00:51".parse().unwrap();
    nl.add_neighbour(br, v4, mac2).unwrap();
    let all = nl.list_neighbours(None).unwrap();
    assert_eq!(all.iter().find(|n| n.ip == v4).unwrap().mac, Some(mac2));

    nl.delete_neighbour(br, v4).unwrap();
    nl.delete_neighbour(br, v6).unwrap();
    let list = nl.list_neighbours(Some(br)).unwrap();
    assert!(list.iter().all(|n| n.ip != v4 && n.ip != v6), "{list:?}");
    let err = nl.delete_neighbour(br, v4).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn links_brought_up_without_link_local_have_only_their_given_addresses() {
    let host = host_or_skip!();
    let (_host_ns, mut nl) = host_netlink(&host);
    let ns = named_netns(&host, "q");
    let v6_addresses =
        |nl: &mut netloom_kernel::Netlink, link: u32| addresses_of(nl, link, Family::Ipv6);

    // A bridge gets its link-local address the moment it comes up.
    nl.create_bridge(&LinkSpec::new("brq")).unwrap();
    let br = nl.link_index("brq").unwrap();
    nl.set_up_without_link_local(br).unwrap();
    // A port, down, made a port without IPv6, then up with hairpin mode.
    nl.create_veth(&LinkSpec::new("vq"), &LinkSpec::new("eth0").netns(&ns))
        .unwrap();
    nl.set_master_without_ipv6("vq", br).unwrap();
    nl.set_hairpin_and_up("vq", true).unwrap();
    // The far end: an address given explicitly still works.
    let mut inside = netloom_kernel::Netlink::open_in(&ns).unwrap();
    let eth0 = inside.link_index("eth0").unwrap();
    inside
        .add_address(eth0, p("fd78::2/64"), AddressOptions::nodad())
        .unwrap();
    inside.set_up_without_link_local(eth0).unwrap();
    let vq = nl.link_index("vq").unwrap();
    nl.add_address(br, p("fd78::1/64"), AddressOptions::nodad())
        .unwrap();
    // Addresses appear at once; a link-local one would too (nothing here
    // waits for duplicate address detection), so wait a little for a late one.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(v6_addresses(&mut nl, br), ["fd78::1/64"]);
    assert!(v6_addresses(&mut nl, vq).is_empty());
    assert_eq!(v6_addresses(&mut inside, eth0), ["fd78::2/64"]);
    let links = nl.list_links().unwrap();
    let port = links.iter().find(|l| l.name == "vq").unwrap();
    assert!(port.up, "{port:?}");
    assert_eq!(port.master, Some(br));
    // And they carry IPv6 without link-local addresses.
    if have_ping(&host) {
        assert_ping(&host, "q", "fd78::1");
    }
}

/// `ip -d` details of a link, as JSON, from inside the host (or from
/// the named namespace in it).
fn link_details(
    host: &netloom_testhost::Host,
    netns: Option<&str>,
    link: &str,
) -> serde_json::Value {
    let mut cmd = host.command("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd
        .args(["-d", "-j", "link", "show", link])
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

#[test]
fn veth_ends_are_made_with_one_queue_each_way() {
    // With a queue per CPU, the kernel cuts the queues in use to one once
    // the link is registered, waiting for an RCU grace period under the
    // RTNL lock; asked for one, it has nothing to cut.
    let host = host_or_skip!();
    let (_host_ns, mut nl) = host_netlink(&host);
    let ns = named_netns(&host, "q");
    nl.create_veth(&LinkSpec::new("vq").up(), &LinkSpec::new("eth0").netns(&ns))
        .unwrap();
    for (netns, link) in [(None, "vq"), (Some("q"), "eth0")] {
        let d = link_details(&host, netns, link);
        assert_eq!(d["num_tx_queues"], 1, "{link}: {d}");
        assert_eq!(d["num_rx_queues"], 1, "{link}: {d}");
    }
}

/// Requests batched into one send are all carried out, in order; the first
/// failure is the one reported, naming its request, and the requests after
/// it are still carried out (the kernel acknowledges each). A request that
/// is not a plain acknowledged one fails inside a batch, and then nothing
/// of the batch is sent.
#[test]
fn batched_requests_are_carried_out_in_order_and_report_the_first_failure() {
    let host = host_or_skip!();
    let ns = named_netns(&host, "bt");
    let mut nl = netloom_kernel::Netlink::open_in(&ns).unwrap();
    nl.create_bridge(&LinkSpec::new("brb")).unwrap();
    let br = nl.link_index("brb").unwrap();
    let is_up =
        |nl: &mut netloom_kernel::Netlink, name: &str| nl.get_link(name).unwrap().unwrap().up;
    let v4 = |nl: &mut netloom_kernel::Netlink| addresses_of(nl, br, Family::Ipv4);

    // A lookup inside a batch: refused, and nothing of the batch is sent.
    let err = nl
        .batch(|nl| {
            nl.set_up("lo", true)?;
            nl.link_index("brb")?;
            nl.get_link("brb").map(|_| ())
        })
        .unwrap_err();
    assert!(
        matches!(err.kind(), netloom_kernel::ErrorKind::InvalidInput(_)),
        "{err}"
    );
    assert!(!is_up(&mut nl, "lo"), "a refused batch sent its requests");

    // All good: every request applied.
    nl.batch(|nl| {
        nl.set_up("lo", true)?;
        nl.add_address(br, p("10.91.0.1/24"), AddressOptions::default())?;
        nl.set_up(br, true)
    })
    .unwrap();
    assert!(is_up(&mut nl, "lo") && is_up(&mut nl, "brb"));
    assert_eq!(v4(&mut nl), ["10.91.0.1/24"]);

    // The second request fails (the address is there); the first and the
    // third are carried out; the error is the second's.
    let err = nl
        .batch(|nl| {
            nl.add_address(br, p("10.92.0.1/24"), AddressOptions::default())?;
            nl.add_address(br, p("10.91.0.1/24"), AddressOptions::default())?;
            nl.set_up(br, false)
        })
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "add address 10.91.0.1/24 to link #{br}: File exists"
        )),
        "{err}"
    );
    assert_eq!(v4(&mut nl), ["10.91.0.1/24", "10.92.0.1/24"]);
    assert!(!is_up(&mut nl, "brb"));

    // A route already there: an error for `add_route`, done for
    // `add_route_unless_one_exists`, in a batch as alone; the request
    // marked so is the only one that may find its object there.
    nl.set_up(br, true).unwrap();
    let default = netloom_kernel::Route::default_via("10.91.0.254".parse().unwrap()).dev(br);
    nl.batch(|nl| nl.add_route_unless_one_exists(&default))
        .unwrap();
    nl.add_route_unless_one_exists(&default).unwrap();
    nl.batch(|nl| {
        nl.add_route_unless_one_exists(&default)?;
        nl.add_route_unless_one_exists(&default)
    })
    .unwrap();
    let err = nl
        .batch(|nl| {
            nl.add_route_unless_one_exists(&default)?;
            nl.add_route(&default)
        })
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert!(nl.add_route(&default).unwrap_err().is_already_exists());
    let err = nl
        .batch(|nl| {
            nl.add_route_unless_one_exists(&default)?;
            nl.add_address(br, p("10.91.0.1/24"), AddressOptions::default())
        })
        .unwrap_err();
    assert!(
        err.to_string().starts_with("add address 10.91.0.1/24"),
        "{err}"
    );
    let defaults = nl.list_routes(Family::Ipv4).unwrap();
    assert_eq!(
        defaults.iter().filter(|r| r.dst.prefix_len() == 0).count(),
        1,
        "{defaults:?}"
    );

    // Batches do not nest; the socket works as before afterwards.
    let err = nl.batch(|nl| nl.batch(|_| Ok(()))).unwrap_err();
    assert!(err.to_string().contains("already"), "{err}");
    nl.set_up(br, true).unwrap();
    assert!(is_up(&mut nl, "brb"));
}
