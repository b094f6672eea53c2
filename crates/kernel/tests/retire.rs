//! Retiring a link (down, renamed, its name free at once) and telling
//! which namespace a veth's other end is in.

mod common;

use netloom_kernel::{LinkSpec, RETIRED_LINK_PREFIX};
use netloom_testhost::host_or_skip;

use common::{host_netlink, named_netns};
use netloom_kernel::{Netlink, Netns};
use netloom_testhost::Host;

/// The test host's netlink, and a sandbox namespace "sb" with netlink in it.
fn host_and_sandbox(host: &Host) -> (Netns, Netlink, Netns, Netlink) {
    let (ns, nl) = host_netlink(host);
    let sandbox = named_netns(host, "sb");
    let inside = Netlink::open_in(&sandbox).unwrap();
    (ns, nl, sandbox, inside)
}

/// Waits until both ends of every veth pair (host index, sandbox index)
/// are gone; fails after 10 s.
fn wait_gone(nl: &mut Netlink, inside: &mut Netlink, pairs: &[(u32, u32)], what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for &(host_end, peer) in pairs {
        while nl.get_link(host_end).unwrap().is_some() || inside.get_link(peer).unwrap().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: veth {host_end}/{peer} was not deleted within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

#[test]
fn a_retired_link_is_down_renamed_and_its_name_is_free() {
    let host = host_or_skip!();
    let (_ns, mut nl) = host_netlink(&host);
    let other = named_netns(&host, "other");
    nl.create_veth(
        &LinkSpec::new("gw0").up(),
        &LinkSpec::new("up0").netns(&other),
    )
    .unwrap();
    let index = nl.link_index("gw0").unwrap();
    let name = nl.retire_link("gw0").unwrap();
    assert_eq!(name, format!("{RETIRED_LINK_PREFIX}{index}"));
    let retired = nl
        .get_link(index)
        .unwrap()
        .expect("the link is still there");
    assert_eq!(retired.name, name);
    assert!(!retired.up, "a retired link is down");
    assert!(nl.get_link("gw0").unwrap().is_none());
    // The name serves a new link at once.
    let again = named_netns(&host, "again");
    nl.create_veth(
        &LinkSpec::new("gw0").up(),
        &LinkSpec::new("up0").netns(&again),
    )
    .unwrap();
    assert_ne!(nl.link_index("gw0").unwrap(), index);
    // Retiring what is not there is a not-found error.
    assert!(nl.retire_link("nosuch").unwrap_err().is_not_found());
}

#[test]
fn a_veth_end_names_the_namespace_of_its_peer() {
    let host = host_or_skip!();
    let (_ns, mut nl) = host_netlink(&host);
    let a = named_netns(&host, "a");
    let b = named_netns(&host, "b");
    nl.create_veth(&LinkSpec::new("va"), &LinkSpec::new("p").netns(&a))
        .unwrap();
    nl.create_veth(&LinkSpec::new("vb"), &LinkSpec::new("p").netns(&b))
        .unwrap();
    let id_a = nl
        .netns_id(&a)
        .unwrap()
        .expect("a has an id once a peer is there");
    let id_b = nl
        .netns_id(&b)
        .unwrap()
        .expect("b has an id once a peer is there");
    assert_ne!(id_a, id_b);
    assert_eq!(
        nl.get_link("va").unwrap().unwrap().peer_netns_id,
        Some(id_a)
    );
    assert_eq!(
        nl.get_link("vb").unwrap().unwrap().peer_netns_id,
        Some(id_b)
    );
    // A link with no peer elsewhere names none.
    assert_eq!(nl.get_link("lo").unwrap().unwrap().peer_netns_id, None);
}

#[test]
fn a_veth_deleted_in_the_background_is_out_of_service_at_once_and_gone_soon() {
    let host = host_or_skip!();
    let (_ns, mut nl, sandbox, mut inside) = host_and_sandbox(&host);
    let mut times = Vec::new();
    for round in 0..5 {
        nl.create_veth(
            &LinkSpec::new("nlv-x").up(),
            &LinkSpec::new("eth0").netns(&sandbox),
        )
        .unwrap();
        let index = nl.link_index("nlv-x").unwrap();
        let peer = inside.link_index("eth0").unwrap();
        inside.set_up(peer, true).unwrap();
        let start = std::time::Instant::now();
        assert!(nl
            .delete_link_in_background("nlv-x", Some(&mut inside))
            .unwrap());
        times.push(start.elapsed());
        // At once: the sandbox's name is free and its end retired (down,
        // so no traffic); the host's end says it is being deleted.
        assert!(inside.get_link("eth0").unwrap().is_none(), "round {round}");
        if let Some(left) = inside.get_link(peer).unwrap() {
            assert_eq!(left.name, format!("{RETIRED_LINK_PREFIX}{peer}"));
            assert!(!left.up, "round {round}: {left:?} is down");
        }
        if let Some(left) = nl.get_link(index).unwrap() {
            assert!(left.being_deleted, "round {round}: {left:?}");
            assert!(!left.lower_up, "round {round}: {left:?} has no carrier");
        }
        // And both ends are gone soon after, without anything else done here.
        wait_gone(
            &mut nl,
            &mut inside,
            &[(index, peer)],
            &format!("round {round}"),
        );
    }
    // A plain deletion blocks 20-30 ms here; this must not.
    times.sort();
    assert!(
        times[2] < std::time::Duration::from_millis(10),
        "median {:?} of {times:?}",
        times[2]
    );
    // Nothing there: false, not an error.
    assert!(!nl.delete_link_in_background("nosuch", None).unwrap());
    // Without a socket where the other end is, that end keeps its name
    // until the deletion takes it.
    nl.create_veth(
        &LinkSpec::new("nlv-y"),
        &LinkSpec::new("eth1").netns(&sandbox),
    )
    .unwrap();
    assert!(nl.delete_link_in_background("nlv-y", None).unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while inside.get_link("eth1").unwrap().is_some() || nl.get_link("nlv-y").unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "eth1 was not deleted within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn veths_deleted_in_the_background_go_together_and_a_device_of_no_kind_never_holds_them_up() {
    let host = host_or_skip!();
    let (_ns, mut nl, sandbox, mut inside) = host_and_sandbox(&host);
    // A link nobody deletes, which must stay.
    nl.create_veth(
        &LinkSpec::new("keep0"),
        &LinkSpec::new("keep1").netns(&sandbox),
    )
    .unwrap();
    // `lo` has no kind: the kernel would refuse a group deletion holding
    // it, so it must not join the group (and it cannot be deleted at all).
    assert!(nl.delete_link_in_background("lo", None).unwrap());
    let mut marked = Vec::new();
    for round in 0..3 {
        for i in 0..4 {
            let (host_end, peer) = (format!("nlv-{round}{i}"), format!("eth{i}"));
            nl.create_veth(
                &LinkSpec::new(&host_end).up(),
                &LinkSpec::new(&peer).netns(&sandbox),
            )
            .unwrap();
            marked.push((
                nl.link_index(&host_end).unwrap(),
                inside.link_index(&peer).unwrap(),
            ));
            assert!(nl
                .delete_link_in_background(host_end.as_str(), Some(&mut inside))
                .unwrap());
        }
        // Every end of every pair goes, without anything else done here.
        wait_gone(&mut nl, &mut inside, &marked, &format!("round {round}"));
    }
    let lo = nl.get_link("lo").unwrap().expect("lo stays");
    assert!(lo.being_deleted, "lo keeps the mark it was given: {lo:?}");
    assert!(nl.get_link("keep0").unwrap().is_some(), "keep0 was deleted");
    assert!(
        inside.get_link("keep1").unwrap().is_some(),
        "keep1 was deleted"
    );
}
