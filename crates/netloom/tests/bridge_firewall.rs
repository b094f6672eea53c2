//! The bridge driver's firewall through the CLI: published ports, NAT,
//! isolation, internal networks and anti-spoofing, shown by traffic.

mod support;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use support::{ask_tcp, inside, serve_tcp, World};

const T: Duration = Duration::from_secs(2);

/// The throwaway host gets an "outside" neighbour: namespace `out` at
/// 192.0.2.2, the host at 192.0.2.1.
fn with_outside(w: &World) {
    let ok = w.sh(
        "ip netns add out && ip link add o0 type veth peer name o1 netns out && \
         ip addr add 192.0.2.1/24 dev o0 && ip link set o0 up && \
         ip -n out addr add 192.0.2.2/24 dev o1 && ip -n out link set o1 up && ip -n out link set lo up && \
         ip -n out route add default via 192.0.2.1",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

fn serve_udp(w: &World, ns: &str, port: u16, name: &'static str) {
    let s = inside(w, Some(ns), || UdpSocket::bind(("::", port)).unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(name.as_bytes(), from);
        }
    });
}

fn ask_udp(w: &World, from: Option<&str>, to: &str) -> Option<String> {
    let addr: SocketAddr = to.parse().unwrap();
    inside(w, from, || {
        let s = UdpSocket::bind(if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })
        .ok()?;
        s.set_read_timeout(Some(T)).ok()?;
        s.send_to(b"?", addr).ok()?;
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

fn web(w: &World) {
    w.ok(&[
        "network",
        "create",
        "web",
        "--subnet",
        "10.88.0.0/24",
        "--subnet",
        "fd00:88::/64",
    ]);
    for s in ["a", "b"] {
        w.ok(&["sandbox", "create", s]);
    }
}

#[test]
fn published_ports_reach_the_sandbox_from_outside_the_host_and_a_peer() {
    let Some(w) = World::new() else { return };
    with_outside(&w);
    web(&w);
    w.ok(&[
        "connect",
        "web",
        "a",
        "--publish",
        "8080:80",
        "--publish",
        "5353:53/udp",
    ]);
    w.ok(&["connect", "web", "b"]);
    serve_tcp(&w, "a", 80, "a");
    serve_udp(&w, "a", 53, "a-udp");
    serve_tcp(&w, "a", 81, "a81");

    // From outside: the sandbox sees the real client.
    assert_eq!(
        ask_tcp(&w, Some("out"), "192.0.2.1:8080").as_deref(),
        Some("a 192.0.2.2")
    );
    assert_eq!(
        ask_udp(&w, Some("out"), "192.0.2.1:5353").as_deref(),
        Some("a-udp")
    );
    // From the host itself, to one of its addresses.
    assert!(ask_tcp(&w, None, "10.88.0.1:8080").is_some_and(|r| r.starts_with("a ")));
    assert!(ask_tcp(&w, None, "192.0.2.1:8080").is_some_and(|r| r.starts_with("a ")));
    // From a peer on the same network (hairpin).
    assert!(ask_tcp(&w, Some("b"), "192.0.2.1:8080").is_some_and(|r| r.starts_with("a ")));
    assert!(ask_tcp(&w, Some("b"), "10.88.0.1:8080").is_some_and(|r| r.starts_with("a ")));
    // Not published: not reachable from outside.
    assert_eq!(ask_tcp(&w, Some("out"), "192.0.2.1:81"), None);
    assert_eq!(
        ask_tcp(&w, Some("out"), "10.88.0.2:81"),
        None,
        "a NAT network is not routable from outside"
    );
    // The host port is taken now, on any network.
    w.ok(&["network", "create", "db", "--subnet", "10.89.0.0/24"]);
    w.ok(&["sandbox", "create", "c"]);
    let err = w.fails(&["connect", "db", "c", "--publish", "8080:80"]);
    assert!(
        err.contains("host port 8080/tcp is already published by sandbox \"a\" on network \"web\""),
        "{err}"
    );

    let inspect = w.json(&["endpoint", "ls"]);
    assert!(inspect
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["ports"][0]["host_port"] == 8080));
    w.assert_clean();
    w.ok(&["disconnect", "web", "a"]);
    assert_eq!(
        ask_tcp(&w, Some("out"), "192.0.2.1:8080"),
        None,
        "withdrawn with the endpoint"
    );
    assert_eq!(ask_udp(&w, Some("out"), "192.0.2.1:5353"), None);
    w.assert_clean();
}

#[test]
fn sandboxes_leave_masqueraded_and_internal_networks_cannot_leave() {
    let Some(w) = World::new() else { return };
    with_outside(&w);
    serve_tcp(&w, "out", 9000, "out");
    web(&w);
    w.ok(&["connect", "web", "a"]);
    assert_eq!(
        ask_tcp(&w, Some("a"), "192.0.2.2:9000").as_deref(),
        Some("out 192.0.2.1"),
        "masqueraded"
    );

    w.ok(&[
        "network",
        "create",
        "priv",
        "--internal",
        "--subnet",
        "10.77.0.0/24",
    ]);
    w.ok(&["sandbox", "create", "p"]);
    w.ok(&["sandbox", "create", "q"]);
    w.ok(&["connect", "priv", "p"]);
    w.ok(&["connect", "priv", "q"]);
    // Even with a route added by hand, nothing is forwarded out or in.
    assert!(w
        .sh("ip -n p route add default via 10.77.0.1")
        .status
        .success());
    assert_eq!(ask_tcp(&w, Some("p"), "192.0.2.2:9000"), None);
    assert!(w
        .sh("ip -n out route add 10.77.0.0/24 via 192.0.2.1")
        .status
        .success());
    serve_tcp(&w, "p", 7000, "p");
    assert_eq!(ask_tcp(&w, Some("out"), "10.77.0.2:7000"), None);
    // Inside the internal network, traffic flows.
    assert_eq!(
        ask_tcp(&w, Some("q"), "10.77.0.2:7000").as_deref(),
        Some("p 10.77.0.3")
    );
    let err = w.fails(&["connect", "priv", "b", "--publish", "8081:80"]);
    assert!(err.contains("internal"), "{err}");
    w.assert_clean();
}

#[test]
fn networks_are_isolated_unless_both_say_otherwise() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "n1", "--subnet", "10.61.0.0/24"]);
    w.ok(&["network", "create", "n2", "--subnet", "10.62.0.0/24"]);
    w.ok(&[
        "network",
        "create",
        "o1",
        "-o",
        "isolate=false",
        "--subnet",
        "10.63.0.0/24",
    ]);
    w.ok(&[
        "network",
        "create",
        "o2",
        "-o",
        "isolate=false",
        "--subnet",
        "10.64.0.0/24",
    ]);
    for (s, n) in [("s1", "n1"), ("s2", "n2"), ("t1", "o1"), ("t2", "o2")] {
        w.ok(&["sandbox", "create", s]);
        w.ok(&["connect", n, s]);
    }
    assert!(w.ping("s1", "10.61.0.1"), "own gateway");
    assert!(!w.ping("s1", "10.62.0.2"), "isolated networks do not talk");
    assert!(!w.ping("s2", "10.61.0.2"));
    assert!(
        !w.ping("t1", "10.61.0.2"),
        "one side isolated is enough to cut"
    );
    assert!(w.ping("t1", "10.64.0.2"), "both isolate=false: they talk");
    assert!(w.ping("t2", "10.63.0.2"));
    w.assert_clean();
}

#[test]
fn forged_source_addresses_and_macs_are_dropped() {
    let Some(w) = World::new() else { return };
    web(&w);
    w.ok(&["connect", "web", "a"]);
    w.ok(&["connect", "web", "b", "--ip", "10.88.0.50"]);
    assert!(w.ping("a", "10.88.0.50"));
    // Another source address inside the sandbox: dropped.
    assert!(w
        .sh("ip -n a addr add 10.88.0.99/24 dev eth0")
        .status
        .success());
    assert!(!w
        .netloom(&[
            "exec",
            "a",
            "--",
            "ping",
            "-c1",
            "-W1",
            "-q",
            "-I",
            "10.88.0.99",
            "10.88.0.50"
        ])
        .status
        .success());
    assert!(w.ping("a", "10.88.0.50"), "its own address still works");
    // Another MAC: everything from it is dropped.
    assert!(w
        .sh("ip -n a link set eth0 address 02:66:66:66:66:66")
        .status
        .success());
    assert!(!w
        .netloom(&["exec", "a", "--", "ping", "-c1", "-W1", "-q", "10.88.0.50"])
        .status
        .success());
}

#[test]
fn disconnect_and_rm_remove_the_rules() {
    let Some(w) = World::new() else { return };
    web(&w);
    let a = w.json(&["connect", "web", "a", "--publish", "8080:80"]);
    let veth = format!("nlv-{}", &a["id"].as_str().unwrap()[..8]);
    let id8 = w.json(&["network", "inspect", "web"])["id"]
        .as_str()
        .unwrap()[..8]
        .to_string();
    let ruleset = || String::from_utf8(w.sh("nft list ruleset").stdout).unwrap();
    let r = ruleset();
    assert!(
        r.contains(&format!("table inet netloom-{id8}")) && r.contains(&veth) && r.contains("8080"),
        "{r}"
    );
    w.ok(&["disconnect", "web", "a"]);
    let r = ruleset();
    assert!(!r.contains(&veth), "elements of {veth} remain: {r}");
    assert!(!r.contains(" 8080 "), "port mapping remains: {r}");
    w.ok(&["network", "rm", "web"]);
    assert!(!ruleset().contains(&format!("netloom-{id8}")));
    w.assert_clean();
}

#[test]
fn mac_check_false_lets_the_mac_change_but_still_checks_addresses() {
    let Some(w) = World::new() else { return };
    w.ok(&[
        "network",
        "create",
        "loose",
        "--subnet",
        "10.87.0.0/24",
        "-o",
        "mac_check=false",
    ]);
    w.ok(&["sandbox", "create", "a"]);
    w.ok(&["sandbox", "create", "b"]);
    w.ok(&["connect", "loose", "a"]);
    w.ok(&["connect", "loose", "b", "--ip", "10.87.0.50"]);
    assert!(w.ping("a", "10.87.0.50"));
    w.sh_ok("ip -n a link set eth0 address 02:66:66:66:66:66");
    assert!(w.ping("a", "10.87.0.50"), "a new MAC is allowed here");
    w.sh_ok("ip -n a addr add 10.87.0.99/24 dev eth0");
    assert!(
        !w.netloom(&[
            "exec",
            "a",
            "--",
            "ping",
            "-c1",
            "-W1",
            "-q",
            "-I",
            "10.87.0.99",
            "10.87.0.50"
        ])
        .status
        .success(),
        "a forged source address is still dropped"
    );
    assert_eq!(w.ok(&["check"]).trim(), "clean");
    w.ok(&["network", "rm", "loose", "--force"]);
    w.assert_clean();
}
