//! `check` sees every disagreement between store and kernel; `gc` repairs
//! what an interrupted command or a vanished sandbox left.

mod support;
use support::{World, STATE};

fn violations(w: &World) -> Vec<String> {
    let out = w.netloom(&["check"]);
    let text = String::from_utf8(out.stdout).unwrap();
    if out.status.success() {
        assert_eq!(text, "clean\n");
        vec![]
    } else {
        text.lines().map(String::from).collect()
    }
}

#[test]
fn gc_repairs_leftovers_and_interrupted_commands() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "web", "--subnet", "10.88.0.0/24"]);
    for s in ["a", "b", "c"] {
        w.ok(&["sandbox", "create", s]);
        w.ok(&["connect", "web", s]);
    }
    w.assert_clean();

    // A link with a netloom name and no record.
    assert!(w
        .sh("ip link add nlv-deadbeef type veth peer name stray0")
        .status
        .success());
    // A sandbox removed behind netloom's back.
    assert!(w.sh("ip netns del b").status.success());
    // A connect interrupted after its record was written (state 'creating').
    let a = w
        .json(&["endpoint", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["sandbox"] == "c")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let db = w.host.enter(|| {
        rusqlite::Connection::open(format!("{STATE}/state.db"))
            .unwrap()
            .execute(
                "UPDATE endpoints SET state = 'creating' WHERE id = ?1",
                [&a],
            )
            .unwrap()
    });
    assert_eq!(db, 1);

    let v = violations(&w);
    assert!(
        v.iter().any(|l| l.starts_with("invariant 6:")
            && l.contains("link nlv-deadbeef")
            && l.contains("no record")),
        "{v:?}"
    );
    assert!(
        v.iter().any(|l| l.contains("sandbox b, which is gone")),
        "{v:?}"
    );
    assert!(v.iter().any(|l| l.contains("left creating")), "{v:?}");
    assert!(
        v.iter()
            .any(|l| l.contains("sandbox \"b\" is recorded but its namespace is gone")),
        "{v:?}"
    );

    let report = w.ok(&["gc"]);
    assert!(report.contains("deleted link nlv-deadbeef"), "{report}");
    assert!(report.contains("its sandbox is gone"), "{report}");
    assert!(report.contains("its connect was interrupted"), "{report}");
    assert!(report.contains("forgot sandbox \"b\""), "{report}");
    w.assert_clean();
    assert_eq!(w.ok(&["gc"]), "nothing to do\n");
    // What survived still works: a reaches its gateway; b's and c's addresses are free again.
    assert!(w.ping("a", "10.88.0.1"));
    assert_eq!(w.json(&["endpoint", "ls"]).as_array().unwrap().len(), 1);
    let links = w.host_links();
    assert_eq!(
        links.iter().filter(|l| l.starts_with("nlv-")).count(),
        1,
        "{links:?}"
    );
}

#[test]
fn check_sees_a_missing_address_and_a_missing_bridge() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "web", "--subnet", "10.88.0.0/24"]);
    w.ok(&["sandbox", "create", "a"]);
    w.ok(&["connect", "web", "a"]);
    assert!(w
        .sh("ip -n a addr del 10.88.0.2/24 dev eth0")
        .status
        .success());
    let v = violations(&w);
    assert!(
        v.iter()
            .any(|l| l.contains("lacks its address 10.88.0.2/24")),
        "{v:?}"
    );
    assert!(w
        .sh("ip link del $(ip -br link | awk '/^nlbr-/{print $1}')")
        .status
        .success());
    let v = violations(&w);
    assert!(
        v.iter()
            .any(|l| l.contains("link nlbr-") && l.contains("missing from the kernel")),
        "{v:?}"
    );
}

#[test]
fn check_sees_missing_firewall_elements_and_gc_removes_stray_tables() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "web", "--subnet", "10.88.0.0/24"]);
    w.ok(&["sandbox", "create", "a"]);
    w.ok(&["connect", "web", "a", "--publish", "8080:80"]);
    w.assert_clean();
    assert!(w
        .sh("nft flush set bridge netloom-guard macs")
        .status
        .success());
    assert!(w.sh("nft add table inet netloom-deadbeef").status.success());
    let v = violations(&w);
    assert!(
        v.iter()
            .any(|l| l.contains("firewall set") && l.contains("macs") && l.contains("lacks")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|l| l.contains("netloom-deadbeef belongs to no network")),
        "{v:?}"
    );
    let report = w.ok(&["gc"]);
    assert!(
        report.contains("deleted nftables table inet netloom-deadbeef"),
        "{report}"
    );
    assert!(!String::from_utf8(w.sh("nft list tables").stdout)
        .unwrap()
        .contains("deadbeef"));
    // A foreign table is never touched.
    assert!(w.sh("nft add table inet theirs").status.success());
    w.ok(&["gc"]);
    assert!(String::from_utf8(w.sh("nft list tables").stdout)
        .unwrap()
        .contains("theirs"));
}

#[test]
fn gc_remakes_the_bridge_of_a_network_without_endpoints() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "web", "--subnet", "10.88.0.0/24"]);
    let bridge = w
        .host_links()
        .into_iter()
        .find(|l| l.starts_with("nlbr-"))
        .unwrap();
    w.sh_ok(&format!("ip link del {bridge}"));
    let v = violations(&w);
    assert!(
        v.iter()
            .any(|l| l.contains(&bridge) && l.contains("missing from the kernel")),
        "{v:?}"
    );
    let out = w.ok(&["gc"]);
    assert!(out.contains("remade network \"web\""), "{out}");
    assert!(w.host_links().contains(&bridge));
    let addrs = w
        .ip_json(None, &format!("addr show dev {bridge}"))
        .to_string();
    assert!(addrs.contains("\"10.88.0.1\""), "{addrs}");
    assert_eq!(violations(&w), Vec::<String>::new());
    // The remade network works.
    w.ok(&["sandbox", "create", "a"]);
    w.ok(&["sandbox", "create", "b"]);
    w.ok(&["connect", "web", "a"]);
    w.ok(&["connect", "web", "b"]);
    assert!(w.ping("a", "10.88.0.3"));
    assert_eq!(violations(&w), Vec::<String>::new());
}
