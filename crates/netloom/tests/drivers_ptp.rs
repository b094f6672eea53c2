//! The ptp (routed, pooled) driver end to end, through the CLI, in throwaway
//! hosts: endpoints reach each other and the host through the host's
//! routing table; addresses and routes read back; nothing left behind.

mod support;
use serde_json::Value;
use support::World;

fn nlp_links(w: &World) -> Vec<String> {
    w.host_links()
        .into_iter()
        .filter(|l| l.starts_with("nlp-"))
        .collect()
}

/// (address without length, gateway) of lease `i` of a connect's JSON.
fn lease(ep: &Value, i: usize) -> (String, String) {
    let l = &ep["leases"][i];
    let addr = l["address"].as_str().unwrap();
    (
        addr.split('/').next().unwrap().to_string(),
        l["gateway"].as_str().unwrap().to_string(),
    )
}

/// Routes of a sandbox as `DST via GW` / `DST dev IF` lines.
fn routes(w: &World, sandbox: &str, family: &str) -> Vec<String> {
    w.ip_json(Some(sandbox), &format!("{family} route show"))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r["gateway"].as_str() {
            Some(gw) => format!("{} via {gw}", r["dst"].as_str().unwrap()),
            None => format!(
                "{} dev {}",
                r["dst"].as_str().unwrap(),
                r["dev"].as_str().unwrap()
            ),
        })
        .collect()
}

fn world_with_routed(extra: &[&str]) -> Option<World> {
    let w = World::new()?;
    let mut args = vec![
        "network",
        "create",
        "routed",
        "--driver",
        "ptp",
        "--subnet",
        "10.70.0.0/24",
        "--subnet",
        "fd00:70::/64",
    ];
    args.extend_from_slice(extra);
    let net = w.json(&args);
    assert_eq!(net["driver"], "ptp");
    assert_eq!(net["mode"], "pooled", "ptp forces the pooled mode");
    w.ok(&["sandbox", "create", "a"]);
    w.ok(&["sandbox", "create", "b"]);
    Some(w)
}

#[test]
fn ptp_endpoints_are_routed_through_the_host_v4_and_v6() {
    let Some(w) = world_with_routed(&["--mtu", "1400"]) else {
        return;
    };
    let a = w.json(&["connect", "routed", "a"]);
    let b = w.json(&["connect", "routed", "b"]);
    let (a4, agw4) = lease(&a, 0);
    let (a6, agw6) = lease(&a, 1);
    let (b4, bgw4) = lease(&b, 0);
    let (b6, _) = lease(&b, 1);
    // Pooled leases: ip/32 (/128) and a gateway of each endpoint's own.
    assert_eq!(a["leases"][0]["address"], format!("{a4}/32"));
    assert_eq!(a["leases"][1]["address"], format!("{a6}/128"));
    assert_ne!(agw4, bgw4, "each endpoint has a gateway of its own");

    // Traffic: endpoint to endpoint through the host, IPv6 at once.
    assert!(w.ping("a", &b4), "a -> b over IPv4");
    assert!(w.ping("b", &a4), "b -> a over IPv4");
    assert!(w.ping("a", &b6), "a -> b over IPv6");
    assert!(w.ping("a", &agw4), "a -> its gateway");
    assert!(w.ping("a", &agw6), "a -> its IPv6 gateway");
    // The host reaches the endpoints.
    for ip in [&a4, &b4, &a6, &b6] {
        assert!(
            w.sh(&format!("ping -c1 -W1 -q {ip}")).status.success(),
            "host -> {ip}"
        );
    }

    // Inside: the /32 and /128 addresses, on-link routes to the gateways,
    // default routes via them, the MTU.
    let addrs = w.addrs("a", "eth0");
    assert!(
        addrs.contains(&format!("{a4}/32")) && addrs.contains(&format!("{a6}/128")),
        "{addrs:?}"
    );
    let r4 = routes(&w, "a", "-4");
    assert!(r4.contains(&format!("{agw4} dev eth0")), "{r4:?}");
    assert!(r4.contains(&format!("default via {agw4}")), "{r4:?}");
    let r6 = routes(&w, "a", "-6");
    assert!(r6.contains(&format!("{agw6} dev eth0")), "{r6:?}");
    assert!(r6.contains(&format!("default via {agw6}")), "{r6:?}");
    assert_eq!(w.ip_json(Some("a"), "link show dev eth0")[0]["mtu"], 1400);

    // Host side: one nlp- veth per endpoint, named after its id, holding
    // the gateway, with a host route to the endpoint; no bridge.
    let veth = format!("nlp-{}", &a["id"].as_str().unwrap()[..8]);
    let links = nlp_links(&w);
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(links.contains(&veth), "{links:?}");
    assert!(w.host_links().iter().all(|l| !l.starts_with("nlbr-")));
    let host_addrs: Vec<String> = w.ip_json(None, &format!("addr show dev {veth}"))[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    assert!(
        host_addrs.contains(&format!("{agw4}/32")) && host_addrs.contains(&format!("{agw6}/128")),
        "{host_addrs:?}"
    );
    // Permanent neighbours both ways: no ARP/ND wait for the first packet.
    let veth_mac = w.ip_json(None, &format!("link show dev {veth}"))[0]["address"].clone();
    for (ns, ip, mac) in [
        (Some("a"), &agw4, &veth_mac),
        (Some("a"), &agw6, &veth_mac),
        (None, &a4, &a["mac"]),
        (None, &a6, &a["mac"]),
    ] {
        let n = w.ip_json(ns, &format!("neigh show {ip}"));
        assert_eq!(n[0]["lladdr"], *mac, "{ns:?} {ip}: {n}");
        assert_eq!(
            n[0]["state"],
            serde_json::json!(["PERMANENT"]),
            "{ns:?} {ip}: {n}"
        );
    }
    let host_route = w.ip_json(None, &format!("route show {a4}"));
    assert_eq!(host_route[0]["dev"], veth.as_str(), "{host_route}");
    assert_eq!(
        w.ip_json(None, &format!("link show dev {veth}"))[0]["mtu"],
        1400
    );
    let fwd = w.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding");
    assert_eq!(String::from_utf8_lossy(&fwd.stdout), "1\n1\n");
    let inspect = w.json(&["endpoint", "inspect", a["id"].as_str().unwrap()]);
    assert_eq!(inspect["driver_info"]["host_interface"], veth.as_str());
    w.assert_clean();

    // Disconnect: a's veth goes, b keeps working.
    w.ok(&["disconnect", "routed", "a"]);
    assert!(!nlp_links(&w).contains(&veth));
    assert!(w
        .ip_json(Some("a"), "link show")
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["ifname"] == "lo"));
    assert_eq!(
        w.ip_json(None, &format!("route show {a4}")),
        Value::Array(vec![])
    );
    assert!(!w.ping("b", &a4));
    assert!(w.sh(&format!("ping -c1 -W1 -q {b4}")).status.success());
    w.assert_clean();

    w.ok(&["network", "rm", "routed", "--force"]);
    assert!(nlp_links(&w).is_empty(), "{:?}", w.host_links());
    assert_eq!(w.json(&["endpoint", "ls"]), serde_json::json!([]));
    w.assert_clean();
}

#[test]
fn ptp_internal_networks_route_only_their_subnets() {
    let Some(w) = world_with_routed(&["--internal"]) else {
        return;
    };
    let a = w.json(&["connect", "routed", "a"]);
    let b = w.json(&["connect", "routed", "b"]);
    let (_, agw4) = lease(&a, 0);
    let (b4, _) = lease(&b, 0);
    let r4 = routes(&w, "a", "-4");
    assert!(!r4.iter().any(|r| r.starts_with("default")), "{r4:?}");
    assert!(r4.contains(&format!("10.70.0.0/24 via {agw4}")), "{r4:?}");
    assert!(
        !routes(&w, "a", "-6")
            .iter()
            .any(|r| r.starts_with("default")),
        "no IPv6 default route either"
    );
    let (b6, _) = lease(&b, 1);
    assert!(w.ping("a", &b4), "endpoints of the network still meet");
    assert!(w.ping("a", &b6), "over IPv6 too");
    // Anything outside the network's subnets is unroutable from inside.
    let out = w.netloom(&["exec", "a", "--", "ip", "route", "get", "10.99.0.1"]);
    assert!(!out.status.success(), "10.99.0.1 should be unreachable");
    w.ok(&["network", "rm", "routed", "--force"]);
    assert!(nlp_links(&w).is_empty());
    w.assert_clean();
}

#[test]
fn ptp_failed_connects_leave_nothing() {
    let Some(w) = world_with_routed(&[]) else {
        return;
    };
    let before = w.ok(&["--json", "ipam", "ls", "routed"]);

    // Refused before anything is made: ptp publishes no ports.
    let err = w.fails(&["connect", "routed", "a", "--publish", "8080:80"]);
    assert!(
        err.contains("does not publish ports (--publish 8080:80/tcp)") && err.contains("bridge"),
        "{err}"
    );

    // Fails before the veth: the sandbox has an interface of that name,
    // which must survive the rollback.
    w.sh_ok("ip -n a link add taken type veth peer name taken2");
    let err = w.fails(&["connect", "routed", "a", "--ifname", "taken"]);
    assert!(
        err.contains("network \"routed\": sandbox a") && err.contains("taken"),
        "{err}"
    );
    assert!(w.sh("ip -n a link show taken").status.success());

    // Fails after the veth and the host side are made: the host already
    // routes the endpoint's address.
    w.sh_ok("ip route add blackhole 10.70.0.50/32");
    let err = w.fails(&["connect", "routed", "a", "--ip", "10.70.0.50"]);
    assert!(
        err.contains("host route 10.70.0.50") && err.contains("File exists"),
        "{err}"
    );

    // Fails inside the sandbox, after the host side: IPv6 is off there.
    w.sh_ok("ip netns exec b sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'");
    let err = w.fails(&["connect", "routed", "b"]);
    assert!(
        err.contains("network \"routed\": sandbox b: add address fd00:70::"),
        "{err}"
    );

    assert!(nlp_links(&w).is_empty(), "{:?}", w.host_links());
    assert_eq!(
        w.ip_json(None, "route show root 10.70.0.0/24")
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] != "blackhole")
            .count(),
        0,
        "no host route is left"
    );
    assert_eq!(
        w.ok(&["--json", "ipam", "ls", "routed"]),
        before,
        "addresses were not released"
    );
    assert_eq!(w.json(&["endpoint", "ls"]), serde_json::json!([]));
    assert!(w
        .ip_json(Some("b"), "link show")
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["ifname"] == "lo"));
    w.assert_clean();
}

#[test]
fn ptp_refuses_unknown_options_and_gateways() {
    let Some(w) = World::new() else { return };
    let err = w.fails(&[
        "network",
        "create",
        "r",
        "--driver",
        "ptp",
        "--subnet",
        "10.70.0.0/24",
        "-o",
        "parent=eth0",
    ]);
    assert!(
        err.contains("network \"r\"")
            && err.contains("no option \"parent\"")
            && err.contains("mtu"),
        "{err}"
    );
    let err = w.fails(&[
        "network",
        "create",
        "r",
        "--driver",
        "ptp",
        "--subnet",
        "10.70.0.0/24",
        "--gateway",
        "10.70.0.1",
    ]);
    assert!(err.contains("gateway of its own"), "{err}");
    assert_eq!(w.json(&["network", "ls"]), serde_json::json!([]));
    w.assert_clean();
}

#[test]
fn ptp_leftovers_are_recognised_by_check_and_gc() {
    let Some(w) = world_with_routed(&[]) else {
        return;
    };
    w.ok(&["sandbox", "create", "c"]);
    let a = w.json(&["connect", "routed", "a"]);
    w.ok(&["connect", "routed", "b"]);
    let c = w.json(&["connect", "routed", "c"]);
    w.assert_clean();
    let veth = |ep: &Value| format!("nlp-{}", &ep["id"].as_str().unwrap()[..8]);

    // A stray nlp- link, a sandbox removed behind netloom's back, and a
    // connect interrupted after its record was written.
    w.sh_ok("ip link add nlp-deadbeef type veth peer name stray0");
    w.sh_ok("ip netns del b");
    let updated = w.host.enter(|| {
        rusqlite::Connection::open(format!("{}/state.db", support::STATE))
            .unwrap()
            .execute(
                "UPDATE endpoints SET state = 'creating' WHERE id = ?1",
                [a["id"].as_str().unwrap()],
            )
            .unwrap()
    });
    assert_eq!(updated, 1);
    let out = w.netloom(&["check"]);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("link nlp-deadbeef"), "{report}");

    let gc = w.ok(&["gc"]);
    assert!(gc.contains("deleted link nlp-deadbeef"), "{gc}");
    // Only c's veth is left; a's was removed with its endpoint, b's went
    // with its namespace.
    assert_eq!(nlp_links(&w), [veth(&c)], "{gc}");
    w.assert_clean();
}
