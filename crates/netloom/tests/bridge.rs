//! The bridge driver end to end, through the CLI, in throwaway hosts:
//! traffic that must pass, kernel state read back, nothing left behind.

mod support;
use support::World;

fn world_with_web() -> Option<World> {
    let w = World::new()?;
    w.ok(&[
        "network",
        "create",
        "web",
        "--subnet",
        "10.88.0.0/24",
        "--subnet",
        "fd00:88::/64",
    ]);
    w.ok(&["sandbox", "create", "a"]);
    w.ok(&["sandbox", "create", "b"]);
    Some(w)
}

#[test]
fn sandboxes_on_one_network_reach_each_other_at_once_v4_and_v6() {
    let Some(w) = world_with_web() else { return };
    let a = w.json(&["connect", "web", "a"]);
    assert_eq!(a["ifname"], "eth0");
    assert_eq!(a["state"], "ready");
    assert_eq!(a["leases"][0]["address"], "10.88.0.2/24");
    assert_eq!(a["leases"][1]["address"], "fd00:88::2/64");
    w.ok(&[
        "connect",
        "web",
        "b",
        "--ip",
        "10.88.0.50",
        "--ip6",
        "fd00:88::50",
        "--mac",
        "02:00:00:00:00:50",
    ]);
    // IPv6 usable immediately: no wait for duplicate address detection.
    assert!(w.ping("a", "fd00:88::50"), "a -> b over IPv6");
    assert!(w.ping("a", "10.88.0.50"), "a -> b over IPv4");
    assert!(w.ping("b", "10.88.0.1"), "b -> gateway");
    // The host end is only a bridge port: IPv6 is off there (each port
    // with IPv6 on made the next one come up slower), and IPv6 between the
    // sandboxes works all the same (above).
    let host_end = a["host_ifname"].as_str().unwrap();
    let out = w.sh(&format!(
        "cat /proc/sys/net/ipv6/conf/{host_end}/disable_ipv6"
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "{host_end}"
    );
    // Kernel state read back.
    let addrs = w.addrs("b", "eth0");
    assert!(
        addrs.contains(&"10.88.0.50/24".to_string())
            && addrs.contains(&"fd00:88::50/64".to_string()),
        "{addrs:?}"
    );
    let link = w.ip_json(Some("b"), "link show dev eth0");
    assert_eq!(link[0]["address"], "02:00:00:00:00:50");
    let routes = w.ip_json(Some("b"), "route show default");
    assert_eq!(routes[0]["gateway"], "10.88.0.1");
    let routes6 = w.ip_json(Some("b"), "-6 route show default");
    assert_eq!(routes6[0]["gateway"], "fd00:88::1");
    // The sandbox is a named namespace `ip netns` sees too.
    assert!(w
        .sh("ip netns exec a ip -br addr show dev eth0 | grep -q 10.88.0.2")
        .status
        .success());
    w.assert_clean();
}

/// Counts, from now on, the frames reaching `sandbox`'s eth0 from any of
/// `macs`.
fn count_frames_from(w: &World, sandbox: &str, macs: &[&str]) {
    w.sh_ok(&format!(
        "ip netns exec {sandbox} nft -f - <<'EOF'
table netdev probe {{
    chain in {{
        type filter hook ingress device eth0 priority 0;
        ether saddr {{ {} }} counter
    }}
}}
EOF",
        macs.join(", ")
    ));
}

fn frames_counted(w: &World, sandbox: &str) -> u64 {
    let out = w.sh(&format!(
        "ip netns exec {sandbox} nft -j list chain netdev probe in"
    ));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| {
            o["rule"]["expr"]
                .as_array()?
                .iter()
                .find_map(|e| e["counter"]["packets"].as_u64())
        })
        .expect("the probe counter")
}

fn sysctl(w: &World, sandbox: &str, key: &str) -> String {
    let out = w.netloom(&["exec", sandbox, "--", "cat", &format!("/proc/sys/{key}")]);
    assert!(out.status.success(), "read {key} in {sandbox}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_new_endpoint_sends_nothing_the_bridge_floods_to_the_others() {
    let Some(w) = world_with_web() else { return };
    w.ok(&["network", "create", "quiet", "--subnet", "10.77.0.0/24"]);
    w.ok(&["sandbox", "create", "c"]);
    let a = w.json(&["connect", "quiet", "a"]);
    // No IPv6 on an IPv4 network's bridge either (else it announces its
    // multicast memberships to every port as each port joins).
    let a = w.json(&["endpoint", "inspect", a["id"].as_str().unwrap()]);
    let br = a["driver_info"]["bridge"].as_str().unwrap();
    let out = w.sh(&format!("cat /proc/sys/net/ipv6/conf/{br}/disable_ipv6"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let bridge_macs = || {
        w.ip_json(None, "link show type bridge")
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["ifname"].to_string(), l["address"].to_string()))
            .collect::<Vec<_>>()
    };
    let macs = bridge_macs();
    let (mac_b, mac_c) = ("02:00:00:00:0b:0b", "02:00:00:00:0c:0c");
    count_frames_from(&w, "a", &[mac_b, mac_c]);
    w.ok(&["connect", "quiet", "b", "--mac", mac_b]);
    w.ok(&["connect", "quiet", "c", "--mac", mac_c]);
    // Bridges keep their own MACs as ports join (a bridge without one
    // takes its lowest port's, and announces every change).
    assert_eq!(bridge_macs(), macs);
    // Long enough for address probes, listener reports and router
    // solicitations (each within a second of the link coming up).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        frames_counted(&w, "a"),
        0,
        "nothing from b or c reached a while they connected to an IPv4-only network"
    );
    // No IPv6 address there, not even a link-local one; IPv4 works.
    assert_eq!(w.addrs("b", "eth0"), ["10.77.0.3/24"]);
    assert!(w.ping("a", "10.77.0.4"), "a -> c");

    // With IPv6: a link-local address, but no probe and no router
    // advertisements taken.
    w.ok(&["connect", "web", "b"]);
    assert_eq!(sysctl(&w, "b", "net/ipv6/conf/eth1/accept_dad"), "0");
    assert_eq!(sysctl(&w, "b", "net/ipv6/conf/eth1/accept_ra"), "0");
    assert!(
        w.addrs("b", "eth1").iter().any(|a| a.starts_with("fe80:")),
        "{:?}",
        w.addrs("b", "eth1")
    );
    w.assert_clean();
}

#[test]
fn disconnect_and_network_rm_leave_nothing() {
    let Some(w) = world_with_web() else { return };
    w.ok(&["connect", "web", "a"]);
    w.ok(&["connect", "web", "b"]);
    let br: Vec<String> = w
        .host_links()
        .into_iter()
        .filter(|l| l.starts_with("nlbr-"))
        .collect();
    assert_eq!(br.len(), 1);
    assert_eq!(
        w.host_links()
            .iter()
            .filter(|l| l.starts_with("nlv-"))
            .count(),
        2
    );

    w.ok(&["disconnect", "web", "a"]);
    // At once: the endpoint's veth is out of service (its host end marked
    // as being deleted, its sandbox end down and renamed, so eth0 is free)
    // and carries nothing.
    assert_eq!(
        w.links_in_service(None)
            .iter()
            .filter(|l| l.starts_with("nlv-"))
            .count(),
        1
    );
    assert_eq!(w.links_in_service(Some("a")), ["lo"]);
    let in_a = w.ip_json(Some("a"), "link show");
    for l in in_a.as_array().unwrap() {
        assert!(
            !l["flags"].as_array().unwrap().iter().any(|f| f == "UP") || l["ifname"] == "lo",
            "{in_a}"
        );
    }
    assert!(!w.ping("b", "10.88.0.2"));
    // Soon after, the kernel has deleted the veth.
    assert_eq!(w.links_once_reaped(Some("a")), ["lo"]);
    assert_eq!(
        w.links_once_reaped(None)
            .iter()
            .filter(|l| l.starts_with("nlv-"))
            .count(),
        1
    );
    let err = w.fails(&["disconnect", "web", "a"]);
    assert!(err.contains("not connected to network \"web\""), "{err}");

    let err = w.fails(&["network", "rm", "web"]);
    assert!(err.contains("b (eth0)") && err.contains("--force"), "{err}");
    w.ok(&["network", "rm", "web", "--force"]);
    let host = w.links_once_reaped(None);
    assert!(host.iter().all(|l| !l.starts_with("nl")), "{host:?}");
    assert_eq!(w.links_once_reaped(Some("b")), ["lo"]);
    assert_eq!(w.json(&["endpoint", "ls"]), serde_json::json!([]));
    w.assert_clean();
}

#[test]
fn a_failed_connect_leaves_nothing() {
    let Some(w) = world_with_web() else { return };
    let before = w.ok(&["--json", "ipam", "ls", "web"]);
    // The store refuses: address outside the subnet.
    let err = w.fails(&["connect", "web", "a", "--ip", "10.99.0.5"]);
    assert!(err.contains("outside its subnets"), "{err}");
    // The kernel refuses: the sandbox already has an interface of that name.
    assert!(w
        .sh("ip -n a link add taken type veth peer name taken2")
        .status
        .success());
    let err = w.fails(&["connect", "web", "a", "--ifname", "taken"]);
    assert!(
        err.contains("taken") && err.contains("File exists"),
        "{err}"
    );
    assert_eq!(
        w.ok(&["--json", "ipam", "ls", "web"]),
        before,
        "addresses were not released"
    );
    assert_eq!(w.json(&["endpoint", "ls"]), serde_json::json!([]));
    assert!(
        w.host_links().iter().all(|l| !l.starts_with("nlv-")),
        "{:?}",
        w.host_links()
    );
    // A sandbox that does not exist.
    let err = w.fails(&["connect", "web", "nosuch"]);
    assert!(
        err.contains("sandbox nosuch") && err.contains("netloom sandbox create nosuch"),
        "{err}"
    );
    w.assert_clean();
}

#[test]
fn internal_networks_have_no_default_route_and_mtu_applies() {
    let Some(w) = World::new() else { return };
    w.ok(&[
        "network",
        "create",
        "priv",
        "--internal",
        "--mtu",
        "1400",
        "--subnet",
        "10.77.0.0/24",
    ]);
    w.ok(&["sandbox", "create", "s"]);
    w.ok(&["connect", "priv", "s"]);
    assert_eq!(
        w.ip_json(Some("s"), "route show default"),
        serde_json::json!([])
    );
    assert_eq!(w.ip_json(Some("s"), "link show dev eth0")[0]["mtu"], 1400);
    assert!(w.ping("s", "10.77.0.1"), "the gateway is on-link");
    w.assert_clean();
}

#[test]
fn sandboxes_by_path_and_pid_and_two_networks_in_one_sandbox() {
    let Some(w) = world_with_web() else { return };
    w.ok(&["network", "create", "db", "--subnet", "10.89.0.0/24"]);
    // By path.
    let e = w.json(&["connect", "web", "/run/netns/a"]);
    assert_eq!(e["sandbox"], "/run/netns/a");
    // A second network in the same sandbox gets eth1; the first keeps the default route.
    let e = w.json(&["connect", "db", "a"]);
    assert_eq!(e["ifname"], "eth1");
    assert_eq!(
        w.ip_json(Some("a"), "route show default")[0]["gateway"],
        "10.88.0.1"
    );
    // By pid: a process in its own network namespace.
    let mut child = w
        .host
        .command("unshare")
        .args(["--net", "sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = format!("pid:{}", child.id());
    let e = w.json(&["connect", "db", &pid]);
    assert_eq!(e["sandbox"], pid);
    // Its loopback, down in a namespace made so, is brought up.
    let lo = w.sh(&format!("nsenter -t {} -n ip -j link show lo", child.id()));
    let lo: serde_json::Value = serde_json::from_slice(&lo.stdout).unwrap();
    assert!(
        lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{lo}"
    );
    assert!(w.ping(&pid, "10.89.0.2"), "pid sandbox -> a over db");
    w.ok(&["disconnect", "db", &pid]);
    child.kill().unwrap();
    child.wait().unwrap();
    // Removing a sandbox disconnects it everywhere.
    let out = w.ok(&["sandbox", "rm", "a"]);
    assert!(out.contains("2 endpoint(s) disconnected"), "{out}");
    assert_eq!(w.json(&["endpoint", "ls"]), serde_json::json!([]));
    assert!(!w.sh("ip netns list | grep -qw a").status.success());
    w.assert_clean();
}
