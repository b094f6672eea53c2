//! Many owners' addresses in one mutation: `allocate_many` gives exactly
//! what `allocate` called for each owner in turn gives (same leases, same
//! first refusal, same state after), and on a refusal allocates nothing.
//! `create_network_and_allocate` is `create_network` followed by
//! `allocate_many`, and on a refusal leaves no network behind.

use std::net::IpAddr;

use netloom_model::{Allocation, Lease, Mode, NetworkRequest, Policy};
use netloom_store::{SqliteStore, Store, StoreError};

mod common;
use common::{null_net, TempDir};

/// Owners with the addresses they ask for, as `allocate_many` takes them.
type Requests<'a> = Vec<(&'a str, &'a [IpAddr])>;

fn net(name: &str, subnets: &[&str], policy: Policy, mode: Mode) -> NetworkRequest {
    NetworkRequest {
        ipam_policy: policy,
        mode,
        ..null_net(name, subnets)
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A store with one network and some history: two owners allocated, the
/// first released again (so the sequential cursor and the lowest free
/// address differ), and one fixed address held.
fn store_with(request: &NetworkRequest, held: &[IpAddr]) -> (TempDir, SqliteStore) {
    let dir = TempDir::new("allocate-many");
    let mut s = SqliteStore::open(dir.path()).unwrap();
    s.create_network(request).unwrap();
    s.allocate(&request.name, "x", &[]).unwrap();
    s.allocate(&request.name, "y", &[]).unwrap();
    s.release(&request.name, "x").unwrap();
    s.allocate(&request.name, "fixed", held).unwrap();
    (dir, s)
}

fn allocations(s: &mut SqliteStore) -> Vec<Allocation> {
    s.snapshot().unwrap().allocations
}

/// `allocate` for each request in turn, stopping at the first refusal.
fn one_by_one(
    s: &mut SqliteStore,
    network: &str,
    requests: &[(&str, &[IpAddr])],
) -> Result<Vec<Vec<Lease>>, StoreError> {
    requests
        .iter()
        .map(|&(owner, requested)| s.allocate(network, owner, requested))
        .collect()
}

/// The requests of `cases` against stores made by `make`: the batch and
/// the calls in turn give the same answer; after a refusal the batch's
/// store is as it was, and stays like a store that was never asked (its
/// next allocation is the same).
fn agree(
    make: impl Fn() -> (TempDir, SqliteStore),
    network: &str,
    requests: &[(&str, &[IpAddr])],
) -> Result<Vec<Vec<Lease>>, String> {
    let (_d1, mut batch) = make();
    let (_d2, mut single) = make();
    let (_d3, mut untouched) = make();
    let before = allocations(&mut batch);
    let got = batch.allocate_many(network, requests);
    let want = one_by_one(&mut single, network, requests);
    match (&got, &want) {
        (Ok(g), Ok(w)) => {
            assert_eq!(g, w, "leases of {requests:?}");
            assert_eq!(allocations(&mut batch), allocations(&mut single));
        }
        (Err(g), Err(w)) => {
            assert_eq!(g.to_string(), w.to_string(), "refusal of {requests:?}");
            assert_eq!(allocations(&mut batch), before, "{requests:?} left a trace");
        }
        _ => panic!("{requests:?}: batch gave {got:?}, one by one {want:?}"),
    }
    // Cursors and low-water marks too: the next allocation is the same.
    let other = if got.is_ok() {
        &mut single
    } else {
        &mut untouched
    };
    if batch.network(network).is_ok() {
        assert_eq!(
            batch
                .allocate(network, "next", &[])
                .map_err(|e| e.to_string()),
            other
                .allocate(network, "next", &[])
                .map_err(|e| e.to_string()),
            "allocation after {requests:?}"
        );
    }
    got.map_err(|e| e.to_string())
}

#[test]
fn allocate_many_gives_what_allocate_in_turn_gives() {
    for (policy, mode) in [
        (Policy::Sequential, Mode::Shared),
        (Policy::Lowest, Mode::Shared),
        (Policy::Sequential, Mode::Pooled),
        (Policy::Lowest, Mode::Pooled),
    ] {
        let request = net("web", &["10.2.0.0/26", "fd00:2::/120"], policy, mode);
        let make = || store_with(&request, &[ip("10.2.0.20")]);
        let a = [ip("10.2.0.9")];
        let c = [ip("fd00:2::80")];
        let both = [ip("10.2.0.40"), ip("fd00:2::90")];
        let leases = agree(
            make,
            "web",
            &[("a", &a), ("b", &[]), ("c", &c), ("d", &both), ("e", &[])],
        )
        .unwrap();
        assert_eq!(leases.len(), 5);
        assert!(leases.iter().all(|l| l.len() == 2), "{leases:?}");
        assert_eq!(leases[0][0].ip, ip("10.2.0.9"));
        // No request at all: nothing to do.
        assert_eq!(agree(make, "web", &[]).unwrap(), Vec::<Vec<Lease>>::new());
    }
}

#[test]
fn allocate_many_refuses_as_allocate_would_and_allocates_nothing() {
    let request = net("web", &["10.3.0.0/29"], Policy::Sequential, Mode::Shared);
    let make = || store_with(&request, &[ip("10.3.0.6")]);
    let held = [ip("10.3.0.6")];
    let outside = [ip("192.168.0.1")];
    let two = [ip("10.3.0.3"), ip("10.3.0.4")];
    let cases: Vec<(Requests, &str)> = vec![
        // 10.3.0.1 is the gateway, 10.3.0.6 and one more are held: three
        // free addresses for four owners.
        (
            vec![("a", &[]), ("b", &[]), ("c", &[]), ("d", &[])],
            "no free",
        ),
        (vec![("a", &[]), ("b", &held)], "already"),
        (vec![("a", &[]), ("a", &[])], "\"a\""),
        (vec![("a", &[]), ("fixed", &[])], "\"fixed\""),
        (vec![("a", &[]), ("bad name!", &[])], "bad name!"),
        (vec![("bad name!", &[]), ("a", &[])], "bad name!"),
        (vec![("a", &[]), ("b", &outside)], "192.168.0.1"),
        (vec![("a", &[]), ("b", &two)], "two IPv4 addresses"),
    ];
    for (requests, needle) in &cases {
        let err = agree(make, "web", requests).expect_err("should be refused");
        assert!(err.contains(needle), "{requests:?}: {err}");
    }
    // No such network: refused the same way, nothing made.
    let err = agree(make, "nope", &[("a", &[])]).expect_err("no such network");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn create_network_and_allocate_is_create_then_allocate_many() {
    let request = net(
        "lab",
        &["10.4.0.0/24", "fd00:4::/120"],
        Policy::Lowest,
        Mode::Shared,
    );
    let fixed = [ip("10.4.0.9")];
    let requests: [(&str, &[IpAddr]); 3] = [("n1", &fixed), ("n2", &[]), ("n3", &[])];
    let dir = TempDir::new("create-allocate");
    let mut both = SqliteStore::open(dir.path()).unwrap();
    let (made, leases) = both
        .create_network_and_allocate(&request, &requests)
        .unwrap();
    let dir2 = TempDir::new("create-allocate");
    let mut apart = SqliteStore::open(dir2.path()).unwrap();
    let made2 = apart.create_network(&request).unwrap();
    let leases2 = apart.allocate_many("lab", &requests).unwrap();
    assert_eq!(leases, leases2);
    assert_eq!(made.name, made2.name);
    assert_eq!(made.subnets, made2.subnets);
    assert_eq!(both.network("lab").unwrap().id, made.id);
    assert_eq!(allocations(&mut both), allocations(&mut apart));
    drop(both);
    // Recorded: a later connection sees it all.
    let mut again = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(again.leases("lab", "n2").unwrap(), leases[1]);
    assert_eq!(again.allocations("lab").unwrap().len(), 2 + 3 * 2);
}

#[test]
fn create_network_and_allocate_leaves_no_network_when_refused() {
    let dir = TempDir::new("create-allocate-refused");
    let mut s = SqliteStore::open(dir.path()).unwrap();
    s.create_network(&net(
        "other",
        &["10.5.0.0/24"],
        Policy::Lowest,
        Mode::Shared,
    ))
    .unwrap();
    let before = s.snapshot().unwrap();
    let small = net("lab", &["10.6.0.0/30"], Policy::Lowest, Mode::Shared);
    let overlapping = net("lab", &["10.5.0.0/25"], Policy::Lowest, Mode::Shared);
    let existing = net("other", &["10.7.0.0/24"], Policy::Lowest, Mode::Shared);
    let taken = [ip("10.6.0.2")];
    let cases: Vec<(&NetworkRequest, Requests, &str)> = vec![
        // A /30 has one address besides its gateway.
        (&small, vec![("a", &[]), ("b", &[])], "no free"),
        (&small, vec![("a", &[]), ("b", &taken)], "already"),
        (&small, vec![("a", &[]), ("bad name!", &[])], "bad name!"),
        (&overlapping, vec![("a", &[])], "overlaps"),
        (&existing, vec![("a", &[])], "exists"),
    ];
    for (request, requests, needle) in &cases {
        let err = s
            .create_network_and_allocate(request, requests)
            .expect_err("should be refused");
        assert!(err.model().is_some(), "a refusal, not a failure: {err}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "{requests:?}: {msg}");
        // As the calls one after the other would refuse.
        let dir2 = TempDir::new("create-allocate-refused");
        let mut apart = SqliteStore::open(dir2.path()).unwrap();
        apart
            .create_network(&net(
                "other",
                &["10.5.0.0/24"],
                Policy::Lowest,
                Mode::Shared,
            ))
            .unwrap();
        let want = apart
            .create_network(request)
            .and_then(|_| apart.allocate_many(&request.name, requests))
            .expect_err("refused one by one too");
        assert_eq!(msg, want.to_string());
        assert_eq!(s.snapshot().unwrap(), before, "{requests:?} left a trace");
    }
    // The name is still free.
    let (_, leases) = s
        .create_network_and_allocate(&small, &[("a", &[])])
        .unwrap();
    assert_eq!(leases[0][0].ip, ip("10.6.0.2"));
}

/// A store with only the required methods: the trait's defaults of
/// `allocate_many` and `create_network_and_allocate` run.
struct Plain(SqliteStore);

impl Store for Plain {
    fn create_network(
        &mut self,
        request: &NetworkRequest,
    ) -> Result<netloom_model::Network, StoreError> {
        self.0.create_network(request)
    }
    fn network(&mut self, name_or_id: &str) -> Result<netloom_model::Network, StoreError> {
        self.0.network(name_or_id)
    }
    fn networks(&mut self) -> Result<Vec<netloom_model::Network>, StoreError> {
        self.0.networks()
    }
    fn remove_network(
        &mut self,
        name_or_id: &str,
        force: bool,
    ) -> Result<netloom_model::Network, StoreError> {
        self.0.remove_network(name_or_id, force)
    }
    fn allocate(
        &mut self,
        network: &str,
        owner: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<Lease>, StoreError> {
        self.0.allocate(network, owner, requested)
    }
    fn release(&mut self, network: &str, owner: &str) -> Result<Vec<Allocation>, StoreError> {
        self.0.release(network, owner)
    }
    fn leases(&mut self, network: &str, owner: &str) -> Result<Vec<Lease>, StoreError> {
        self.0.leases(network, owner)
    }
    fn allocations(&mut self, network: &str) -> Result<Vec<Allocation>, StoreError> {
        self.0.allocations(network)
    }
    fn snapshot(&mut self) -> Result<netloom_model::State, StoreError> {
        self.0.snapshot()
    }
    fn add_endpoint(
        &mut self,
        endpoint: &netloom_model::Endpoint,
        requested: &[IpAddr],
    ) -> Result<Vec<Lease>, StoreError> {
        self.0.add_endpoint(endpoint, requested)
    }
    fn set_endpoint_state(
        &mut self,
        id: &str,
        state: netloom_model::EndpointState,
    ) -> Result<(), StoreError> {
        self.0.set_endpoint_state(id, state)
    }
    fn remove_endpoint(&mut self, id: &str) -> Result<(), StoreError> {
        self.0.remove_endpoint(id)
    }
    fn endpoint(&mut self, id: &str) -> Result<netloom_model::Endpoint, StoreError> {
        self.0.endpoint(id)
    }
    fn endpoints(
        &mut self,
        network: Option<&str>,
    ) -> Result<Vec<netloom_model::Endpoint>, StoreError> {
        self.0.endpoints(network)
    }
    fn add_sandbox(&mut self, name: &str, inode: u64) -> Result<(), StoreError> {
        self.0.add_sandbox(name, inode)
    }
    fn remove_sandbox(&mut self, name: &str) -> Result<bool, StoreError> {
        self.0.remove_sandbox(name)
    }
    fn sandboxes(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        self.0.sandboxes()
    }
    fn sandbox_ifnames(&mut self, inode: u64) -> Result<Vec<String>, StoreError> {
        self.0.sandbox_ifnames(inode)
    }
    fn sandbox_endpoints(
        &mut self,
        network: &str,
        inode: u64,
    ) -> Result<Vec<netloom_model::Endpoint>, StoreError> {
        self.0.sandbox_endpoints(network, inode)
    }
}

#[test]
fn the_defaults_agree_and_take_back_what_they_gave() {
    let request = net("web", &["10.3.0.0/29"], Policy::Lowest, Mode::Shared);
    let (_d1, s) = store_with(&request, &[ip("10.3.0.6")]);
    let (_d2, mut twin) = store_with(&request, &[ip("10.3.0.6")]);
    let mut plain = Plain(s);
    assert!(plain.lab_store().unwrap().is_none());
    let before = plain.snapshot().unwrap().allocations;
    let too_many: [(&str, &[IpAddr]); 4] = [("a", &[]), ("b", &[]), ("c", &[]), ("d", &[])];
    let err = plain.allocate_many("web", &too_many).unwrap_err();
    let want = one_by_one(&mut twin, "web", &too_many).unwrap_err();
    assert_eq!(err.to_string(), want.to_string());
    assert_eq!(plain.snapshot().unwrap().allocations, before);
    let fine: [(&str, &[IpAddr]); 2] = [("a", &[]), ("b", &[])];
    let (_d3, mut fresh) = store_with(&request, &[ip("10.3.0.6")]);
    assert_eq!(
        plain.allocate_many("web", &fine).unwrap(),
        fresh.allocate_many("web", &fine).unwrap()
    );

    let lab = net("lab", &["10.6.0.0/30"], Policy::Lowest, Mode::Shared);
    let networks = plain.networks().unwrap();
    let err = plain
        .create_network_and_allocate(&lab, &[("a", &[]), ("b", &[])])
        .unwrap_err();
    assert!(err.to_string().contains("no free IPv4 address"), "{err}");
    assert_eq!(plain.networks().unwrap(), networks);
    let (made, leases) = plain
        .create_network_and_allocate(&lab, &[("a", &[])])
        .unwrap();
    assert_eq!(made.name, "lab");
    assert_eq!(leases[0][0].ip, ip("10.6.0.2"));
}
