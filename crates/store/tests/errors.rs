//! Every refusal names the object and the cause, suggests a fix, and leaves
//! the state exactly as it was.

use std::net::IpAddr;

use netloom_model::{Mode, NetworkRequest};
use netloom_store::{SqliteStore, Store, StoreError};

mod common;
use common::TempDir;

fn store() -> (TempDir, SqliteStore) {
    let dir = TempDir::new("errors");
    let mut s = SqliteStore::open(dir.path()).unwrap();
    s.create_network(&net("web", &["10.1.0.0/24"])).unwrap();
    s.create_network(&net("v6only", &["fd00:6::/64"])).unwrap();
    s.allocate("web", "c1", &["10.1.0.7".parse().unwrap()])
        .unwrap();
    (dir, s)
}

fn net(name: &str, subnets: &[&str]) -> NetworkRequest {
    NetworkRequest {
        name: name.into(),
        subnets: subnets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Runs `f`, expects a refusal containing every piece of `needles`, and
/// checks the state did not change.
fn refused<T: std::fmt::Debug>(
    s: &mut SqliteStore,
    f: impl FnOnce(&mut SqliteStore) -> Result<T, StoreError>,
    needles: &[&str],
) {
    let before = s.snapshot().unwrap();
    let err = f(s).expect_err("should be refused");
    assert!(err.model().is_some(), "a refusal, not a failure: {err}");
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
    }
    assert_eq!(
        s.snapshot().unwrap(),
        before,
        "state changed by a refused request: {msg}"
    );
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn requested_address_outside_the_subnet() {
    let (_d, mut s) = store();
    refused(
        &mut s,
        |s| s.allocate("web", "c2", &ips(&["10.2.0.5"])),
        &["network \"web\"", "10.2.0.5", "outside", "10.1.0.0/24"],
    );
}

#[test]
fn requested_address_equal_to_the_gateway() {
    let (_d, mut s) = store();
    refused(
        &mut s,
        |s| s.allocate("web", "c2", &ips(&["10.1.0.1"])),
        &["\"web\"", "10.1.0.1", "gateway of 10.1.0.0/24"],
    );
}

#[test]
fn requested_network_or_broadcast_address() {
    let (_d, mut s) = store();
    refused(
        &mut s,
        |s| s.allocate("web", "c2", &ips(&["10.1.0.0"])),
        &["\"web\"", "10.1.0.0", "network address"],
    );
    refused(
        &mut s,
        |s| s.allocate("web", "c2", &ips(&["10.1.0.255"])),
        &["\"web\"", "10.1.0.255", "broadcast address"],
    );
}

#[test]
fn requested_address_already_allocated_names_the_owner() {
    let (_d, mut s) = store();
    refused(
        &mut s,
        |s| s.allocate("web", "c2", &ips(&["10.1.0.7"])),
        &["\"web\"", "10.1.0.7", "already allocated", "owner \"c1\""],
    );
}

#[test]
fn exhausted_range_names_network_and_size() {
    let dir = TempDir::new("exhaust");
    let mut s = SqliteStore::open(dir.path()).unwrap();
    let mut req = net("tiny", &["10.3.0.0/24"]);
    req.ip_ranges = vec!["10.3.0.8/30".into()];
    s.create_network(&req).unwrap();
    for i in 0..4 {
        s.allocate("tiny", &format!("c{i}"), &[]).unwrap();
    }
    refused(
        &mut s,
        |s| s.allocate("tiny", "c9", &[]),
        &[
            "network \"tiny\"",
            "no free IPv4 address",
            "all 4 assignable",
            "10.3.0.8/30",
        ],
    );
    // Pooled: the address is found but its gateway is not; nothing is kept.
    let mut p = net("routed", &["10.4.0.0/29"]);
    p.mode = Mode::Pooled;
    s.create_network(&p).unwrap();
    for i in 0..3 {
        s.allocate("routed", &format!("c{i}"), &[]).unwrap();
    }
    refused(
        &mut s,
        |s| s.allocate("routed", "c9", &[]),
        &["\"routed\"", "no free IPv4 address", "all 6 assignable"],
    );
}

#[test]
fn overlapping_subnets_name_both_networks() {
    let (_d, mut s) = store();
    refused(
        &mut s,
        |s| s.create_network(&net("db", &["10.1.0.0/16"])),
        &[
            "network \"db\"",
            "10.1.0.0/16",
            "overlaps network \"web\"",
            "(10.1.0.0/24)",
        ],
    );
    refused(
        &mut s,
        |s| s.create_network(&net("db", &["10.1.0.128/25"])),
        &["\"db\"", "10.1.0.128/25", "\"web\" (10.1.0.0/24)"],
    );
    refused(
        &mut s,
        |s| s.create_network(&net("web", &["10.7.0.0/24"])),
        &["network \"web\" already exists"],
    );
    // Another address space may reuse the subnet.
    let mut other = net("lab1", &["10.1.0.0/24"]);
    other.address_space = Some("lab1".into());
    s.create_network(&other).unwrap();
    s.allocate("lab1", "c1", &ips(&["10.1.0.7"])).unwrap();
}

#[test]
fn gateway_or_range_outside_the_subnet() {
    let (_d, mut s) = store();
    let mut req = net("db", &["10.5.0.0/24"]);
    req.gateways = vec!["10.6.0.1".into()];
    refused(
        &mut s,
        |s| s.create_network(&req),
        &[
            "network \"db\"",
            "gateway 10.6.0.1",
            "not inside",
            "10.5.0.0/24",
        ],
    );
    let mut req = net("db", &["10.5.0.0/24"]);
    req.ip_ranges = vec!["10.5.1.0/28".into()];
    refused(
        &mut s,
        |s| s.create_network(&req),
        &[
            "network \"db\"",
            "IP range 10.5.1.0/28",
            "not inside",
            "10.5.0.0/24",
        ],
    );
    let mut req = net("db", &["10.5.0.0/24"]);
    req.gateways = vec!["10.5.0.255".into()];
    refused(
        &mut s,
        |s| s.create_network(&req),
        &["\"db\"", "gateway 10.5.0.255", "broadcast address"],
    );
}

#[test]
fn malformed_cidr_or_address() {
    let (_d, mut s) = store();
    refused(
        &mut s,
        |s| s.create_network(&net("db", &["10.5.0.0/33"])),
        &["invalid subnet \"10.5.0.0/33\"", "longer than 32"],
    );
    refused(
        &mut s,
        |s| s.create_network(&net("db", &["10.5.0/24"])),
        &[
            "invalid subnet \"10.5.0/24\"",
            "not an IPv4 or IPv6 address",
        ],
    );
    refused(
        &mut s,
        |s| s.create_network(&net("db", &["10.5.0.3/24"])),
        &["did you mean 10.5.0.0/24"],
    );
    let mut req = net("db", &["10.5.0.0/24"]);
    req.gateways = vec!["10.5.0.x".into()];
    refused(
        &mut s,
        |s| s.create_network(&req),
        &["invalid gateway \"10.5.0.x\""],
    );
    let mut req = net("db", &["10.5.0.0/24"]);
    req.aux_addresses = vec!["router10.5.0.3".into()];
    refused(
        &mut s,
        |s| s.create_network(&req),
        &["invalid aux address \"router10.5.0.3\"", "NAME=IP"],
    );
}

#[test]
fn ipv4_address_into_an_ipv6_only_network() {
    let (_d, mut s) = store();
    refused(
        &mut s,
        |s| s.allocate("v6only", "c2", &ips(&["10.1.0.9"])),
        &[
            "network \"v6only\"",
            "no IPv4 subnet",
            "10.1.0.9",
            "fd00:6::/64",
        ],
    );
}

#[test]
fn owner_may_hold_one_endpoint_per_network() {
    let (_d, mut s) = store();
    refused(
        &mut s,
        |s| s.allocate("web", "c1", &[]),
        &[
            "\"web\"",
            "owner \"c1\" already holds 10.1.0.7",
            "release it first",
        ],
    );
}

#[test]
fn unknown_network_and_removal_with_owners() {
    let (_d, mut s) = store();
    refused(
        &mut s,
        |s| s.allocate("nope", "c2", &[]),
        &["network \"nope\" does not exist", "network ls"],
    );
    refused(
        &mut s,
        |s| s.remove_network("web", false),
        &[
            "network \"web\"",
            "1 owner(s) still hold addresses",
            "\"c1\"",
            "--force",
        ],
    );
    s.remove_network("web", true).unwrap();
    assert!(s
        .snapshot()
        .unwrap()
        .allocations
        .iter()
        .all(|a| a.network != "web"));
}

#[test]
fn releasing_what_is_not_held_is_a_no_op() {
    let (_d, mut s) = store();
    let before = s.snapshot().unwrap();
    assert!(s.release("web", "nobody").unwrap().is_empty());
    assert_eq!(s.snapshot().unwrap(), before);
    let released = s.release("web", "c1").unwrap();
    assert_eq!(released.len(), 1);
    assert!(
        s.release("web", "c1").unwrap().is_empty(),
        "a second release is a no-op"
    );
}

#[test]
fn sequential_does_not_reuse_a_just_freed_address_but_lowest_does() {
    let dir = TempDir::new("policy");
    let mut s = SqliteStore::open(dir.path()).unwrap();
    s.create_network(&net("seq", &["10.6.0.0/24"])).unwrap();
    let mut low = net("low", &["10.7.0.0/24"]);
    low.ipam_policy = netloom_model::Policy::Lowest;
    s.create_network(&low).unwrap();
    for n in ["seq", "low"] {
        s.allocate(n, "a", &[]).unwrap();
        s.allocate(n, "b", &[]).unwrap();
        s.release(n, "a").unwrap();
    }
    assert_eq!(
        s.allocate("seq", "c", &[]).unwrap()[0].ip.to_string(),
        "10.6.0.4"
    );
    assert_eq!(
        s.allocate("low", "c", &[]).unwrap()[0].ip.to_string(),
        "10.7.0.2"
    );
}

#[test]
fn ipv6_slash64_pool_allocates_without_per_address_memory() {
    let dir = TempDir::new("v6");
    let mut s = SqliteStore::open(dir.path()).unwrap();
    let mut req = net("big6", &["fd00:64::/64"]);
    req.ip_ranges = vec!["fd00:64::ffff:ffff:ffff:fff0/124".into()];
    s.create_network(&req).unwrap();
    // The pool near the end of a /64: the database holds only what is given.
    let a = s.allocate("big6", "a", &[]).unwrap();
    assert_eq!(a[0].address, "fd00:64::ffff:ffff:ffff:fff0/64");
    let db = std::fs::metadata(s.path()).unwrap().len();
    assert!(db < 1 << 20, "state file is {db} bytes");
    let n = s.network("big6").unwrap();
    assert_eq!(n.subnets[0].subnet.size(), 1u128 << 64);
}
