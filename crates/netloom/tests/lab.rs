//! Labs by traffic: isolation between labs that use the same addresses,
//! names, published ports, what the host sees, bring-up speed, and that
//! failures and teardown leave nothing.

mod lab_support;
mod support;

use std::time::{Duration, Instant};

use lab_support::*;
use support::World;

#[test]
fn two_labs_with_the_same_addresses_never_meet() {
    let Some(w) = World::new() else { return };
    for lab in ["one", "two"] {
        let f = lab_file(&w, lab, &fixed_lab(lab, &["x", "y"]));
        w.ok(&["lab", "up", &f]);
    }
    let mut servers = vec![serve(&w, "one", "y", 7000), serve(&w, "two", "y", 7000)];
    for lab in ["one", "two"] {
        assert!(pings(&w, lab, "x", "y"), "{lab}: x pings y by name");
        assert!(
            pings(&w, lab, "x", "172.18.0.11"),
            "{lab}: x pings y by address"
        );
        assert_eq!(
            tcp_answer(&w, Some((lab, "x")), "y", 7000).as_deref(),
            Some(format!("y.{lab}").as_str()),
            "{lab}: x reaches its own y by name"
        );
        assert_eq!(
            tcp_answer(&w, Some((lab, "x")), "172.18.0.11", 7000).as_deref(),
            Some(format!("y.{lab}").as_str()),
            "{lab}: x reaches its own y by address"
        );
    }
    // The other lab's bridge namespace (its end of the /30) is out of reach.
    let two = w.json(&["lab", "ls"]);
    let link = two.as_array().unwrap()[1]["link"]
        .as_str()
        .unwrap()
        .to_string();
    let other = link.split('/').next().unwrap();
    assert!(!exec(&w, "one", "x", &["ping", "-c1", "-W1", "-q", other])
        .status
        .success());
    for s in &mut servers {
        s.kill().unwrap();
        s.wait().unwrap();
    }
    w.ok(&["lab", "down", "one"]);
    w.ok(&["lab", "down", "two"]);
    nothing_left(&w);
}

#[test]
fn the_host_shows_only_its_own_address_and_a_published_port_reaches_the_node() {
    let Some(w) = World::new() else { return };
    let f = lab_file(
        &w,
        "pub",
        "name = \"pub\"\n[[node]]\nname = \"web\"\n[[node]]\nname = \"db\"\n\
         [[port]]\nhost = 8080\nnode = \"web\"\nport = 7000\n",
    );
    w.ok(&["lab", "up", &f]);
    let addrs: Vec<String> = w
        .ip_json(None, "-4 addr show")
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .map(|a| a["local"].as_str().unwrap().to_string())
        .filter(|a| a.starts_with("172.18."))
        .collect();
    assert_eq!(addrs, ["172.18.255.1"]);
    let routes: Vec<String> = w
        .ip_json(None, "-4 route show")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dst"].as_str().unwrap().to_string())
        .filter(|d| d.starts_with("172.18."))
        .collect();
    assert_eq!(routes, ["172.18.255.0/30"]);
    let mut server = serve(&w, "pub", "web", 7000);
    // From the host itself, to its own address.
    assert_eq!(
        tcp_answer(&w, None, "172.18.255.1", 8080).as_deref(),
        Some("web.pub")
    );
    // From outside the host namespace, through the host's LAN address.
    w.sh_ok(
        "ip link add lan0 type veth peer name lan1 && ip netns add outside \
         && ip link set lan1 netns outside && ip addr add 10.99.0.1/24 dev lan0 \
         && ip link set lan0 up && ip -n outside addr add 10.99.0.2/24 dev lan1 \
         && ip -n outside link set lan1 up && ip -n outside link set lo up",
    );
    let from_outside = w.sh(
        "for i in 1 2 3 4 5 6; do ip netns exec outside timeout 2 bash -c \
         'exec 3<>/dev/tcp/10.99.0.1/8080 && cat <&3' && exit 0; sleep 0.3; done; exit 1",
    );
    assert_eq!(
        String::from_utf8_lossy(&from_outside.stdout).trim(),
        "web.pub"
    );
    // A port that is not published goes nowhere.
    assert!(tcp_answer(&w, None, "172.18.255.1", 8081).is_none());
    server.kill().unwrap();
    server.wait().unwrap();
    w.ok(&["lab", "down", "pub"]);
    w.sh_ok("ip netns del outside && ip link del lan0 2>/dev/null; true");
    nothing_left(&w);
}

#[test]
fn a_hundred_node_lab_comes_up_in_three_seconds_and_goes_down_leaving_nothing() {
    let Some(w) = World::new() else { return };
    let f = lab_file(&w, "big", &numbered_lab("big", 100));
    let t = Instant::now();
    w.ok(&["lab", "up", &f]);
    let up = t.elapsed();
    assert_eq!(namespaces(&w).len(), 102, "gateway, bridge and 100 nodes");
    assert!(
        pings(&w, "big", "n0", "n99"),
        "the first node reaches the last"
    );
    let t = Instant::now();
    w.ok(&["lab", "down", "big"]);
    let down = t.elapsed();
    println!("100 nodes: up {up:?}, down {down:?}");
    assert!(up < Duration::from_secs(3), "up took {up:?}");
    assert!(down < Duration::from_secs(2), "down took {down:?}");
    nothing_left(&w);
}

/// A node's IPv6 counter from /proc/net/snmp6 (0 when not listed).
fn snmp6(w: &World, lab: &str, node: &str, key: &str) -> u64 {
    let out = exec(w, lab, node, &["cat", "/proc/net/snmp6"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(key)).then(|| f.next().unwrap().parse().unwrap())
        })
        .unwrap_or(0)
}

#[test]
fn nodes_hear_nothing_of_each_other_coming_up_and_still_talk_over_ipv6() {
    let Some(w) = World::new() else { return };
    let f = lab_file(&w, "quiet", &numbered_lab("quiet", 30));
    w.ok(&["lab", "up", &f]);
    // Listener reports go out within a second of an address being added.
    std::thread::sleep(Duration::from_millis(1500));
    // Each node reports the group of its IPv6 address twice; flooded to
    // every other node that made 58 here. The bridge's own go nowhere.
    assert_eq!(snmp6(&w, "quiet", "n0", "Icmp6InType143"), 0);
    let multicast = snmp6(&w, "quiet", "n0", "Ip6InMcastPkts");
    assert!(multicast < 10, "n0 received {multicast} multicast packets");
    // Neighbour discovery (multicast too) still reaches every node.
    assert!(pings(&w, "quiet", "n0", "n29.v6"), "n0 -> n29 over IPv6");
    assert!(pings(&w, "quiet", "n29", "n0.v6"), "n29 -> n0 over IPv6");
    w.ok(&["lab", "down", "quiet"]);
    nothing_left(&w);
}

#[test]
fn nodes_get_addresses_in_their_own_space_and_commands_their_environment() {
    let Some(w) = World::new() else { return };
    let f = lab_file(
        &w,
        "env",
        "name = \"env\"\n[[node]]\nname = \"a\"\n[[node]]\nname = \"b\"\naddress = \"172.18.0.1\"\n",
    );
    let lab = w.json(&["lab", "up", &f]);
    let nodes = lab["nodes"].as_array().unwrap();
    assert_eq!(
        nodes[0]["ipv4"], "172.18.0.2",
        "the fixed address is taken first"
    );
    assert_eq!(nodes[1]["ipv4"], "172.18.0.1");
    assert_eq!(nodes[1]["ipv6"], "fd6e:6cac:1200::1");
    // Only the plan's addresses: no IPv6 link-local one, whose probes the
    // bridge would flood to every node.
    assert_eq!(
        w.addrs("/run/netns/nlab-env:a", "eth0"),
        ["172.18.0.2/24", "fd6e:6cac:1200::2/64"]
    );
    assert!(pings(&w, "env", "a", "b.v6"), "IPv6 by name");
    let out = exec(
        &w,
        "env",
        "a",
        &["sh", "-c", "echo $NETLOOM_LAB $NETLOOM_NODE $(hostname)"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "env a a");
    let out = w.netloom(&[
        "lab",
        "exec",
        "env",
        "--bridge",
        "--",
        "sh",
        "-c",
        "echo $NETLOOM_LAB $NETLOOM_STATE_DIR; ip -br link show br0",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("env /run/netloom-state\nbr0"), "{text}");
    // The host's /etc/hosts is untouched.
    let hosts = w.sh("cat /etc/hosts");
    assert!(!String::from_utf8_lossy(&hosts.stdout).contains("172.18.0.1\tb"));
    let err = w.fails(&["lab", "exec", "env", "zed", "--", "true"]);
    assert!(
        err.contains("no node \"zed\"") && err.contains("a, b"),
        "{err}"
    );
    w.ok(&["lab", "down", "env"]);
    nothing_left(&w);
}

#[test]
fn refused_labs_leave_nothing_behind() {
    let Some(w) = World::new() else { return };
    let a = lab_file(
        &w,
        "a",
        "name = \"a\"\n[[node]]\nname = \"n\"\n[[port]]\nhost = 9000\nnode = \"n\"\nport = 80\n",
    );
    w.ok(&["lab", "up", &a]);
    let before = namespaces(&w);
    let check = |w: &World| {
        assert_eq!(labs(w), ["a"]);
        assert_eq!(namespaces(w), before);
        w.assert_clean();
    };
    let clash = lab_file(
        &w,
        "b",
        "name = \"b\"\n[[node]]\nname = \"m\"\n[[port]]\nhost = 9000\nnode = \"m\"\nport = 81\n",
    );
    let err = w.fails(&["lab", "up", &clash]);
    assert!(
        err.contains("host port 9000/tcp is already published by lab \"a\""),
        "{err}"
    );
    check(&w);
    let err = w.fails(&["lab", "up", &a]);
    assert!(
        err.contains("lab \"a\"") && err.contains("already exists"),
        "{err}"
    );
    check(&w);
    let bad = lab_file(
        &w,
        "c",
        "name = \"c\"\n[[node]]\nname = \"m\"\nadress = \"172.18.0.9\"\n",
    );
    let err = w.fails(&["lab", "up", &bad]);
    assert!(
        err.contains("adress") && err.contains("/run/c.toml"),
        "{err}"
    );
    check(&w);
    let outside = lab_file(
        &w,
        "d",
        "name = \"d\"\n[[node]]\nname = \"m\"\naddress = \"10.1.1.1\"\n",
    );
    let err = w.fails(&["lab", "up", &outside]);
    assert!(
        err.contains("field `address` 10.1.1.1 is outside the node subnet"),
        "{err}"
    );
    check(&w);
    let moved = lab_file(&w, "e", "name = \"e\"\n[[node]]\nname = \"m\"\n");
    let err = w.fails(&["lab", "up", &moved, "--lab-base", "10.77.0.0/16"]);
    assert!(
        err.contains("cannot change while labs exist") && err.contains("\"a\""),
        "{err}"
    );
    check(&w);
    w.ok(&["lab", "down", "a"]);
    nothing_left(&w);
    // With no lab left, the plan may move; everything follows it.
    let lab = w.json(&["lab", "up", &moved, "--lab-base", "10.77.0.0/16"]);
    assert_eq!(lab["link"], "10.77.192.2/30");
    assert!(w.host_links().iter().any(|l| l == "nlgw"));
    assert_eq!(w.addrs("/run/netns/nlab-e:m", "eth0")[0], "10.77.0.1/24");
    w.ok(&["lab", "down", "e"]);
    nothing_left(&w);
}

#[test]
fn a_lab_takes_the_slot_of_one_just_taken_down() {
    let Some(w) = World::new() else { return };
    // A second lab keeps the gateway up, so the slot's old link lingers
    // only until the kernel reaps the first lab's namespace.
    let keep = lab_file(&w, "keep", &fixed_lab("keep", &["k"]));
    w.ok(&["lab", "up", &keep]);
    let first = lab_file(&w, "first", &fixed_lab("first", &["x"]));
    w.ok(&["lab", "up", &first]);
    let slot_of = |lab: &str| -> (u64, String) {
        let labs = w.json(&["lab", "ls"]);
        let l = labs
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == lab)
            .unwrap_or_else(|| panic!("lab {lab} in {labs}"))
            .clone();
        (
            l["slot"].as_u64().unwrap(),
            l["link"].as_str().unwrap().to_string(),
        )
    };
    let (slot, _) = slot_of("first");
    w.ok(&["lab", "down", "first"]);
    let second = lab_file(&w, "second", &fixed_lab("second", &["y"]));
    w.ok(&["lab", "up", &second]);
    let (again, link) = slot_of("second");
    assert_eq!(again, slot, "the freed slot is taken again");
    // The new lab's node reaches the gateway's end of its own /30, which
    // only a working new gateway link can answer.
    let gateway_end: std::net::Ipv4Addr = link.split('/').next().unwrap().parse().unwrap();
    let gateway_end = std::net::Ipv4Addr::from(u32::from(gateway_end) - 1).to_string();
    assert!(
        pings(&w, "second", "y", &gateway_end),
        "second/y reaches the gateway at {gateway_end}"
    );
    w.assert_clean();
    w.ok(&["lab", "down", "second"]);
    w.ok(&["lab", "down", "keep"]);
    nothing_left(&w);
}
