//! The ipvlan driver end to end, through the CLI, in throwaway hosts. On a
//! kernel without ipvlan the network is refused with an error that names
//! the missing feature, and the traffic tests skip saying so; where ipvlan
//! exists they run.

mod support;
use serde_json::Value;
use support::World;

/// Whether this kernel makes ipvlans, asked independently of netloom:
/// `ip link add` on the parent, in the throwaway host.
fn kernel_has_ipvlan(w: &World) -> bool {
    let made = w
        .sh("ip link add ivprobe link up0 type ipvlan mode l2")
        .status
        .success();
    if made {
        w.sh_ok("ip link del ivprobe");
    }
    made
}

fn create_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "network",
        "create",
        name,
        "--driver",
        "ipvlan",
        "-o",
        "parent=up0",
        "--subnet",
        "10.72.0.0/24",
        "--subnet",
        "fd00:72::/64",
    ];
    args.extend_from_slice(extra);
    args
}

fn only_lo(w: &World, sandbox: &str) -> bool {
    w.ip_json(Some(sandbox), "link show")
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["ifname"] == "lo")
}

#[test]
fn ipvlan_options_are_checked_before_the_kernel() {
    let Some(w) = World::with_lan("10.72.0", "fd00:72") else {
        return;
    };
    let err = w.fails(&[
        "network",
        "create",
        "iv",
        "--driver",
        "ipvlan",
        "--subnet",
        "10.72.0.0/24",
    ]);
    assert!(
        err.contains("network \"iv\": driver ipvlan needs the option parent")
            && err.contains("up0"),
        "{err}"
    );
    let err = w.fails(&create_args("iv", &["-o", "mode=bridge"]));
    assert!(
        err.contains("\"bridge\"") && err.contains("l2, l3 or l3s"),
        "{err}"
    );
    let err = w.fails(&create_args("iv", &["-o", "vni=7"]));
    assert!(err.contains("no option \"vni\""), "{err}");
    assert_eq!(w.json(&["network", "ls"]), serde_json::json!([]));
    w.assert_clean();
}

#[test]
fn ipvlan_networks_are_refused_up_front_where_the_kernel_lacks_it() {
    let Some(w) = World::with_lan("10.72.0", "fd00:72") else {
        return;
    };
    if kernel_has_ipvlan(&w) {
        // Nothing to refuse here: the network is made like any other.
        assert_eq!(w.json(&create_args("iv", &[]))["driver"], "ipvlan");
        w.ok(&["network", "rm", "iv"]);
        w.assert_clean();
        return;
    }
    let err = w.fails(&create_args("iv", &[]));
    assert!(
        err.contains("network \"iv\": driver ipvlan: this kernel lacks ipvlan")
            && err.contains("modprobe ipvlan"),
        "{err}"
    );
    // Nothing recorded, nothing made.
    assert_eq!(w.json(&["network", "ls"]), serde_json::json!([]));
    assert!(w.host_links().iter().all(|l| !l.starts_with("nl")));
    w.assert_clean();
}

#[test]
fn ipvlan_l2_sandboxes_reach_each_other_and_the_lan() {
    let Some(w) = World::with_lan("10.72.0", "fd00:72") else {
        return;
    };
    if !kernel_has_ipvlan(&w) {
        netloom_testhost::skip("ipvlan traffic: kernel lacks ipvlan");
        return;
    }
    w.json(&create_args("iv", &[]));
    let a = w.json(&["connect", "iv", "a"]);
    w.ok(&[
        "connect",
        "iv",
        "b",
        "--ip",
        "10.72.0.50",
        "--ip6",
        "fd00:72::50",
    ]);
    assert_eq!(a["leases"][0]["address"], "10.72.0.2/24");
    assert!(w.ping("a", "10.72.0.50"), "a -> b");
    assert!(w.ping("a", "fd00:72::50"), "a -> b over IPv6");
    assert!(w.ping("b", "10.72.0.1"), "b -> outside");
    assert!(
        w.sh("ip netns exec outside ping -c1 -W1 -q 10.72.0.2")
            .status
            .success(),
        "outside -> a"
    );
    let link = &w.ip_json(Some("a"), "-d link show dev eth0")[0];
    assert_eq!(link["linkinfo"]["info_kind"], "ipvlan", "{link}");
    let addrs = w.addrs("a", "eth0");
    assert!(addrs.contains(&"10.72.0.2/24".to_string()), "{addrs:?}");
    assert_eq!(
        w.ip_json(Some("a"), "route show default")[0]["gateway"],
        "10.72.0.1"
    );
    assert!(w.host_links().iter().all(|l| !l.starts_with("nl")));
    w.assert_clean();
    w.ok(&["disconnect", "iv", "a"]);
    assert!(only_lo(&w, "a"));
    w.ok(&["network", "rm", "iv", "--force"]);
    assert!(only_lo(&w, "b"));
    w.assert_clean();
}

#[test]
fn ipvlan_l3_routes_onto_the_link() {
    let Some(w) = World::with_lan("10.72.0", "fd00:72") else {
        return;
    };
    if !kernel_has_ipvlan(&w) {
        netloom_testhost::skip("ipvlan l3 traffic: kernel lacks ipvlan");
        return;
    }
    w.json(&create_args("iv3", &["-o", "mode=l3"]));
    w.ok(&["connect", "iv3", "a"]);
    w.ok(&["connect", "iv3", "b"]);
    let link = &w.ip_json(Some("a"), "-d link show dev eth0")[0];
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "l3", "{link}");
    let default: Value = w.ip_json(Some("a"), "route show default");
    assert_eq!(default[0]["dev"], "eth0", "{default}");
    assert!(default[0]["gateway"].is_null(), "{default}");
    assert!(w.ping("a", "10.72.0.3"), "a -> b, routed by the parent");
    w.ok(&["network", "rm", "iv3", "--force"]);
    assert!(only_lo(&w, "a") && only_lo(&w, "b"));
    w.assert_clean();
}
