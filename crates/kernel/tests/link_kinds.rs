//! Link types beyond veth and bridge, and detection of missing ones.

mod common;

use netloom_kernel::{
    supports_link_kind, AddressOptions, ErrorKind, IpvlanMode, LinkSpec, MacvlanMode, Netlink,
    VxlanSpec,
};
use netloom_testhost::{host_or_skip, skip};

use common::{assert_ping, have_ping, host_netlink, named_netns};

#[test]
fn feature_detection_knows_present_and_absent_kinds() {
    netloom_testhost::require_root!();
    assert!(supports_link_kind("bridge").unwrap());
    assert!(supports_link_kind("veth").unwrap());
    assert!(supports_link_kind("macvlan").unwrap());
    assert!(!supports_link_kind("no-such-kind").unwrap());
    // Cached: the same answer again.
    assert!(!supports_link_kind("no-such-kind").unwrap());
}

#[test]
fn ipvlan_works_or_fails_with_a_typed_missing_feature_error() {
    let host = host_or_skip!();
    let (_ns, mut nl) = host_netlink(&host);
    nl.create_bridge(&LinkSpec::new("parent0").up()).unwrap();
    let parent = nl.link_index("parent0").unwrap();
    let result = nl.create_ipvlan(&LinkSpec::new("ipv0"), parent, IpvlanMode::L2);
    if supports_link_kind("ipvlan").unwrap() {
        result.unwrap();
        let link = nl.get_link("ipv0").unwrap().unwrap();
        assert_eq!(link.kind.as_deref(), Some("ipvlan"));
        assert_eq!(link.parent, Some(parent));
    } else {
        let err = result.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::MissingFeature { feature } if feature == "ipvlan"),
            "{err:?}"
        );
        assert_eq!(err.missing_feature_name(), Some("ipvlan"));
        assert!(
            err.to_string()
                .starts_with("create ipvlan \"ipv0\" on parent #"),
            "{err}"
        );
        assert!(err.to_string().contains("kernel lacks ipvlan"), "{err}");
        assert!(nl.get_link("ipv0").unwrap().is_none());
        skip("ipvlan positive path: kernel lacks ipvlan (typed error checked)");
    }
}

#[test]
fn macvlans_in_bridge_mode_talk_to_each_other() {
    let host = host_or_skip!();
    if !supports_link_kind("macvlan").unwrap() {
        skip("kernel lacks macvlan");
        return;
    }
    let (_ns, mut nl) = host_netlink(&host);
    let a = named_netns(&host, "ma");
    let b = named_netns(&host, "mb");
    // A veth pair as the parent: macvlans need an Ethernet lower device.
    nl.create_veth(&LinkSpec::new("low0").up(), &LinkSpec::new("low1"))
        .unwrap();
    nl.set_up("low1", true).unwrap();
    let parent = nl.link_index("low0").unwrap();
    nl.create_macvlan(
        &LinkSpec::new("mv0").netns(&a).up(),
        parent,
        MacvlanMode::Bridge,
    )
    .unwrap();
    nl.create_macvlan(
        &LinkSpec::new("mv0").netns(&b).up(),
        parent,
        MacvlanMode::Bridge,
    )
    .unwrap();
    assert!(
        nl.get_link("mv0").unwrap().is_none(),
        "macvlan landed in the host"
    );

    for (ns, last) in [(&a, 1), (&b, 2)] {
        let mut inside = Netlink::open_in(ns).unwrap();
        let link = inside.get_link("mv0").unwrap().expect("macvlan inside");
        assert_eq!(link.kind.as_deref(), Some("macvlan"));
        assert!(link.up);
        inside
            .add_address(
                link.index,
                format!("10.44.0.{last}/24").parse().unwrap(),
                AddressOptions::default(),
            )
            .unwrap();
    }
    if have_ping(&host) {
        assert_ping(&host, "ma", "10.44.0.2");
    }
}

#[test]
fn vxlan_is_created_when_supported() {
    let host = host_or_skip!();
    if !supports_link_kind("vxlan").unwrap() {
        skip("kernel lacks vxlan");
        return;
    }
    let (_ns, mut nl) = host_netlink(&host);
    let mut spec = VxlanSpec::new(4242);
    spec.remote = Some("192.0.2.1".parse().unwrap());
    spec.port = 4790;
    nl.create_vxlan(&LinkSpec::new("vx42").mtu(1450), &spec)
        .unwrap();
    let link = nl.get_link("vx42").unwrap().unwrap();
    assert_eq!(link.kind.as_deref(), Some("vxlan"));
    assert_eq!(link.mtu, 1450);
    nl.delete_link("vx42").unwrap();
    assert!(nl.get_link("vx42").unwrap().is_none());
}
