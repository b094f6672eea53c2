//! The macvlan driver end to end, through the CLI, in throwaway hosts.
//!
//! The parent is one end of a veth pair whose other end sits in an
//! "outside" namespace holding the subnet's gateway addresses: a stand-in
//! for a LAN with a router on it.

mod support;
use serde_json::Value;
use support::World;

fn create_lan(w: &World, name: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "network",
        "create",
        name,
        "--driver",
        "macvlan",
        "-o",
        "parent=up0",
        "--subnet",
        "10.71.0.0/24",
        "--subnet",
        "fd00:71::/64",
    ];
    args.extend_from_slice(extra);
    w.json(&args)
}

fn outside_pings(w: &World, ip: &str) -> bool {
    w.sh(&format!("ip netns exec outside ping -c1 -W1 -q {ip}"))
        .status
        .success()
}

/// Macvlan links in the host namespace.
fn host_macvlans(w: &World) -> Value {
    w.ip_json(None, "link show type macvlan")
}

/// Only `lo` is left in the sandbox.
fn only_lo(w: &World, sandbox: &str) -> bool {
    w.ip_json(Some(sandbox), "link show")
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["ifname"] == "lo")
}

#[test]
fn macvlan_bridge_mode_sandboxes_reach_each_other_and_the_lan() {
    let Some(w) = World::with_lan("10.71.0", "fd00:71") else {
        return;
    };
    let net = create_lan(&w, "lan", &[]);
    assert_eq!(net["driver"], "macvlan");
    assert_eq!(net["subnets"][0]["gateway"], "10.71.0.1");
    let a = w.json(&["connect", "lan", "a"]);
    w.ok(&[
        "connect",
        "lan",
        "b",
        "--ip",
        "10.71.0.50",
        "--ip6",
        "fd00:71::50",
    ]);
    assert_eq!(a["leases"][0]["address"], "10.71.0.2/24");
    assert_eq!(a["leases"][1]["address"], "fd00:71::2/64");

    // Traffic: sibling to sibling, to the LAN and back, IPv6 at once.
    assert!(w.ping("a", "10.71.0.50"), "a -> b");
    assert!(w.ping("a", "fd00:71::50"), "a -> b over IPv6");
    assert!(w.ping("a", "10.71.0.1"), "a -> outside");
    assert!(w.ping("b", "fd00:71::1"), "b -> outside over IPv6");
    assert!(outside_pings(&w, "10.71.0.2"), "outside -> a");
    assert!(outside_pings(&w, "fd00:71::50"), "outside -> b over IPv6");

    // Read back: a macvlan in bridge mode with the endpoint's MAC, the
    // lease addresses, default routes via the LAN's gateway.
    let link = &w.ip_json(Some("a"), "-d link show dev eth0")[0];
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan", "{link}");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "bridge", "{link}");
    assert_eq!(link["address"], a["mac"], "{link}");
    let addrs = w.addrs("a", "eth0");
    assert!(
        addrs.contains(&"10.71.0.2/24".to_string()) && addrs.contains(&"fd00:71::2/64".to_string()),
        "{addrs:?}"
    );
    assert_eq!(
        w.ip_json(Some("a"), "route show default")[0]["gateway"],
        "10.71.0.1"
    );
    assert_eq!(
        w.ip_json(Some("a"), "-6 route show default")[0]["gateway"],
        "fd00:71::1"
    );
    let inspect = w.json(&["endpoint", "inspect", a["id"].as_str().unwrap()]);
    assert_eq!(inspect["driver_info"]["parent"], "up0");
    // Nothing of netloom's in the host namespace.
    assert_eq!(host_macvlans(&w), Value::Array(vec![]));
    assert!(w.host_links().iter().all(|l| !l.starts_with("nl")));
    w.assert_clean();

    w.ok(&["disconnect", "lan", "a"]);
    assert!(only_lo(&w, "a"));
    assert!(!outside_pings(&w, "10.71.0.2"));
    assert!(w.ping("b", "10.71.0.1"), "b is untouched");
    w.assert_clean();

    w.ok(&["network", "rm", "lan", "--force"]);
    assert!(only_lo(&w, "b"));
    assert!(
        w.host_links().contains(&"up0".to_string()),
        "the parent stays"
    );
    assert_eq!(w.json(&["endpoint", "ls"]), serde_json::json!([]));
    w.assert_clean();
}

#[test]
fn macvlan_private_mode_keeps_siblings_apart() {
    let Some(w) = World::with_lan("10.71.0", "fd00:71") else {
        return;
    };
    create_lan(&w, "lanp", &["-o", "mode=private", "--mtu", "1400"]);
    w.ok(&["connect", "lanp", "a"]);
    w.ok(&["connect", "lanp", "b"]);
    let link = &w.ip_json(Some("a"), "-d link show dev eth0")[0];
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "private", "{link}");
    assert_eq!(link["mtu"], 1400);
    assert!(w.ping("a", "10.71.0.1"), "a -> outside");
    assert!(w.ping("b", "10.71.0.1"), "b -> outside");
    assert!(!w.ping("a", "10.71.0.3"), "a must not reach b");
    assert!(!w.ping("b", "10.71.0.2"), "b must not reach a");
    assert!(!w.ping("a", "fd00:71::3"), "nor over IPv6");
    w.ok(&["network", "rm", "lanp", "--force"]);
    assert!(only_lo(&w, "a") && only_lo(&w, "b"));
    w.assert_clean();
}

#[test]
fn macvlan_network_create_names_what_is_wrong() {
    let Some(w) = World::with_lan("10.71.0", "fd00:71") else {
        return;
    };
    let base = [
        "network",
        "create",
        "lan",
        "--driver",
        "macvlan",
        "--subnet",
        "10.71.0.0/24",
    ];
    let with = |extra: &[&str]| -> String {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        w.fails(&args)
    };
    let err = with(&[]);
    assert!(
        err.contains("network \"lan\": driver macvlan needs the option parent")
            && err.contains("-o parent=IF")
            && err.contains("up0"),
        "the error lists the host's interfaces: {err}"
    );
    let err = with(&["-o", "parent=nope"]);
    assert!(
        err.contains("parent interface \"nope\" does not exist") && err.contains("up0"),
        "{err}"
    );
    let err = with(&["-o", "parent=up0", "-o", "mode=l2"]);
    assert!(
        err.contains("\"l2\"") && err.contains("bridge, private, vepa or passthru"),
        "{err}"
    );
    let err = with(&["-o", "parent=up0", "-o", "isolate=false"]);
    assert!(
        err.contains("no option \"isolate\"") && err.contains("parent, mode, mtu"),
        "{err}"
    );
    let err = with(&["-o", "parent=up0", "--mode", "pooled"]);
    assert!(err.contains("no pooled mode"), "{err}");
    assert_eq!(w.json(&["network", "ls"]), serde_json::json!([]));
    w.assert_clean();
}

#[test]
fn macvlan_failed_connects_leave_nothing() {
    let Some(w) = World::with_lan("10.71.0", "fd00:71") else {
        return;
    };
    create_lan(&w, "lan", &[]);
    let before = w.ok(&["--json", "ipam", "ls", "lan"]);

    // Refused before anything is made: nothing to publish on a LAN address.
    let err = w.fails(&["connect", "lan", "a", "--publish", "8080:80"]);
    assert!(
        err.contains("network \"lan\": sandbox a: macvlan endpoints sit on")
            && err.contains("no host port to publish (--publish 8080:80/tcp)"),
        "{err}"
    );

    // The name is taken in the sandbox: the foreign interface survives.
    w.sh_ok("ip -n a link add taken type veth peer name taken2");
    let err = w.fails(&["connect", "lan", "a", "--ifname", "taken"]);
    assert!(
        err.contains("network \"lan\": sandbox a: create macvlan taken on parent up0"),
        "{err}"
    );
    let taken = &w.ip_json(Some("a"), "-d link show dev taken")[0];
    assert_eq!(taken["linkinfo"]["info_kind"], "veth", "{taken}");

    // Fails after the macvlan is made: IPv6 is off in the sandbox.
    w.sh_ok("ip netns exec b sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'");
    let err = w.fails(&["connect", "lan", "b"]);
    assert!(
        err.contains("network \"lan\": sandbox b: add address fd00:71::"),
        "{err}"
    );
    assert!(only_lo(&w, "b"), "the half-made macvlan is gone");

    // The parent vanished after the network was made.
    w.sh_ok("ip link del up0");
    let err = w.fails(&["connect", "lan", "a"]);
    assert!(
        err.contains("network \"lan\"") && err.contains("\"up0\" does not exist"),
        "{err}"
    );

    assert_eq!(w.ok(&["--json", "ipam", "ls", "lan"]), before);
    assert_eq!(w.json(&["endpoint", "ls"]), serde_json::json!([]));
    w.ok(&["network", "rm", "lan"]);
    w.assert_clean();
}
