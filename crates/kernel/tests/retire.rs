//! Retiring a link (down, renamed, its name free at once) and telling
//! which namespace a veth's other end is in.

mod common;

use netloom_kernel::{LinkSpec, RETIRED_LINK_PREFIX};
use netloom_testhost::host_or_skip;

use common::{host_netlink, named_netns};

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
