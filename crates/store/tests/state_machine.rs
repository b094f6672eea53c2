//! State-machine property test: random sequences of network create/delete,
//! static and dynamic allocation and release, in shared and pooled mode,
//! IPv4 and IPv6, run against the SQLite store and against a deliberately
//! naive reference model. After every step the store's answer must equal the
//! reference's (same addresses, same kind of refusal), and every invariant
//! must hold over the store's state.
//!
//! Cases × steps ≥ 10,000 per run; NETLOOM_PROPTEST_CASES raises the count.

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::mem::discriminant;
use std::net::IpAddr;

use netloom_model::addr::{from_u128, to_u128};
use netloom_model::{invariants, Family, Mode, ModelError, Network, NetworkRequest, Owner, Policy};
use netloom_store::{SqliteStore, Store, StoreError};

mod common;
use common::TempDir;

const STEPS: usize = 100;

/// Candidate subnets: small, so pools run out; several overlap on purpose.
const SUBNETS: &[&str] = &[
    "10.0.0.0/28",
    "10.0.0.0/29",
    "10.0.0.16/29",
    "10.0.1.0/30",
    "10.0.0.0/23",
    "fd00::/125",
    "fd00::/120",
    "fd00:1::/124",
    "fd00:2::/64",
];

#[derive(Debug, Clone)]
enum Op {
    Create {
        name: usize,
        space: usize,
        subnets: Vec<usize>,
        pooled: bool,
        lowest: bool,
        narrow_range: bool,
        aux: bool,
    },
    Remove {
        name: usize,
        force: bool,
    },
    Allocate {
        name: usize,
        owner: usize,
        /// Static requests: (subnet candidate, offset from its first address).
        statics: Vec<(usize, u8)>,
    },
    Release {
        name: usize,
        owner: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..4usize, 0..2usize, prop::collection::vec(0..SUBNETS.len(), 1..3), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(name, space, subnets, pooled, lowest, narrow_range, aux)| Op::Create { name, space, subnets, pooled, lowest, narrow_range, aux }),
        1 => (0..4usize, any::<bool>()).prop_map(|(name, force)| Op::Remove { name, force }),
        6 => (0..4usize, 0..10usize, prop::collection::vec((0..SUBNETS.len(), 0..20u8), 0..2))
            .prop_map(|(name, owner, statics)| Op::Allocate { name, owner, statics }),
        3 => (0..4usize, 0..10usize).prop_map(|(name, owner)| Op::Release { name, owner }),
    ]
}

fn net_name(i: usize) -> String {
    format!("n{i}")
}

fn owner_name(i: usize) -> String {
    format!("o{i}")
}

fn request(op: &Op) -> NetworkRequest {
    let Op::Create {
        name,
        space,
        subnets,
        pooled,
        lowest,
        narrow_range,
        aux,
    } = op
    else {
        unreachable!()
    };
    let cidrs: Vec<String> = subnets.iter().map(|&i| SUBNETS[i].to_string()).collect();
    let first = netloom_model::Cidr::parse("subnet", &cidrs[0]).unwrap();
    let mut req = NetworkRequest {
        name: net_name(*name),
        subnets: cidrs,
        address_space: Some(format!("space{space}")),
        ipam_policy: if *lowest {
            Policy::Lowest
        } else {
            Policy::Sequential
        },
        mode: if *pooled { Mode::Pooled } else { Mode::Shared },
        ..Default::default()
    };
    if *narrow_range && first.prefix() < first.family().bits() - 2 {
        // The upper half of the first subnet.
        let half = netloom_model::Cidr::new(
            from_u128(first.family(), first.first() + first.size() / 2),
            first.prefix() + 1,
        )
        .unwrap();
        req.ip_ranges.push(half.to_string());
    }
    if *aux {
        let (lo, _) = first.host_bounds();
        req.aux_addresses
            .push(format!("r={}", from_u128(first.family(), lo + 2)));
    }
    req
}

/// The reference: plain maps and linear searches.
#[derive(Default)]
struct Reference {
    nets: BTreeMap<String, RefNet>,
}

struct RefNet {
    net: Network,
    held: BTreeMap<(Family, u128), Owner>,
    cursors: BTreeMap<usize, u128>,
}

/// What an operation did: addresses given/released, or the kind of refusal.
#[derive(Debug)]
enum Outcome {
    Done(Vec<IpAddr>),
    Refused(ModelError),
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Outcome::Done(a), Outcome::Done(b)) => a == b,
            (Outcome::Refused(a), Outcome::Refused(b)) => discriminant(a) == discriminant(b),
            _ => false,
        }
    }
}

impl RefNet {
    fn next_free(&mut self, family: Family) -> Option<(usize, u128)> {
        for (idx, s) in self.net.subnets.iter().enumerate() {
            if s.family() != family {
                continue;
            }
            let (lo, hi) = s.pool_bounds();
            let start = match (self.net.ipam_policy, self.cursors.get(&idx)) {
                (Policy::Sequential, Some(&c)) if c < hi => c + 1,
                _ => lo,
            };
            let mut n = start;
            loop {
                if !self.held.contains_key(&(family, n)) {
                    self.cursors.insert(idx, n);
                    return Some((idx, n));
                }
                n = if n == hi { lo } else { n + 1 };
                if n == start {
                    break;
                }
            }
        }
        None
    }
}

impl Reference {
    fn create(&mut self, req: &NetworkRequest) -> Outcome {
        let net = match req.validate("x") {
            Ok(n) => n,
            Err(e) => return Outcome::Refused(e),
        };
        if self.nets.contains_key(&net.name) {
            return Outcome::Refused(ModelError::NetworkExists { name: net.name });
        }
        for other in self.nets.values() {
            if other.net.address_space != net.address_space {
                continue;
            }
            for a in &net.subnets {
                for b in &other.net.subnets {
                    if a.subnet.overlaps(&b.subnet) {
                        return Outcome::Refused(ModelError::Overlap {
                            network: net.name.clone(),
                            subnet: a.subnet,
                            other_network: other.net.name.clone(),
                            other_subnet: b.subnet,
                            address_space: net.address_space.clone(),
                        });
                    }
                }
            }
        }
        let mut held = BTreeMap::new();
        for s in &net.subnets {
            if let Some(g) = s.gateway {
                held.insert((s.family(), to_u128(g)), Owner::Gateway);
            }
            for (k, ip) in &s.aux_addresses {
                held.insert((s.family(), to_u128(*ip)), Owner::Reserved(k.clone()));
            }
        }
        self.nets.insert(
            net.name.clone(),
            RefNet {
                net,
                held,
                cursors: BTreeMap::new(),
            },
        );
        Outcome::Done(vec![])
    }

    fn remove(&mut self, name: &str, force: bool) -> Outcome {
        let Some(n) = self.nets.get(name) else {
            return Outcome::Refused(ModelError::NoSuchNetwork { name: name.into() });
        };
        if !force && n.held.values().any(|o| matches!(o, Owner::Endpoint(_))) {
            return Outcome::Refused(ModelError::Invalid {
                object: String::new(),
                why: String::new(),
                fix: String::new(),
            });
        }
        self.nets.remove(name);
        Outcome::Done(vec![])
    }

    fn allocate(&mut self, name: &str, owner: &str, statics: &[IpAddr]) -> Outcome {
        let Some(n) = self.nets.get_mut(name) else {
            return Outcome::Refused(ModelError::NoSuchNetwork { name: name.into() });
        };
        let mine = Owner::Endpoint(owner.into());
        let holds: Vec<IpAddr> = n
            .held
            .iter()
            .filter(|(_, o)| **o == mine)
            .map(|((f, a), _)| from_u128(*f, *a))
            .collect();
        if !holds.is_empty() {
            return Outcome::Refused(ModelError::OwnerExists {
                network: name.into(),
                owner: owner.into(),
                holds,
            });
        }
        let mut chosen: Vec<(Family, usize, IpAddr)> = vec![];
        for ip in statics {
            let family = Family::of(ip);
            if !n.net.subnets.iter().any(|s| s.family() == family) {
                return Outcome::Refused(ModelError::NoSubnetOfFamily {
                    network: name.into(),
                    ip: *ip,
                    subnets: vec![],
                });
            }
            let Some(idx) = n.net.subnets.iter().position(|s| s.subnet.contains(ip)) else {
                return Outcome::Refused(ModelError::OutsideSubnets {
                    network: name.into(),
                    ip: *ip,
                    subnets: vec![],
                });
            };
            let s = &n.net.subnets[idx];
            if let Some(role) = s.subnet.reserved_role(ip) {
                return Outcome::Refused(ModelError::ReservedRole {
                    network: name.into(),
                    ip: *ip,
                    subnet: s.subnet,
                    role,
                });
            }
            if s.gateway == Some(*ip) {
                return Outcome::Refused(ModelError::IsGateway {
                    network: name.into(),
                    ip: *ip,
                    subnet: s.subnet,
                });
            }
            if chosen.iter().any(|(f, _, _)| *f == family) {
                return Outcome::Refused(ModelError::Invalid {
                    object: String::new(),
                    why: String::new(),
                    fix: String::new(),
                });
            }
            chosen.push((family, idx, *ip));
        }
        // Work on a copy: a refusal must leave nothing behind.
        let saved = (n.held.clone(), n.cursors.clone());
        let mut given = vec![];
        for family in n.net.families() {
            let ip = match chosen.iter().find(|(f, _, _)| *f == family) {
                Some(&(_, _, ip)) => {
                    if let Some(h) = n.held.get(&(family, to_u128(ip))) {
                        let holder = h.clone();
                        (n.held, n.cursors) = saved;
                        return Outcome::Refused(ModelError::AlreadyAllocated {
                            network: name.into(),
                            ip,
                            holder,
                        });
                    }
                    ip
                }
                None => match n.next_free(family) {
                    Some((_, a)) => from_u128(family, a),
                    None => {
                        (n.held, n.cursors) = saved;
                        return Outcome::Refused(ModelError::Exhausted {
                            network: name.into(),
                            family,
                            pools: vec![],
                        });
                    }
                },
            };
            n.held.insert((family, to_u128(ip)), mine.clone());
            given.push(ip);
            if n.net.mode == Mode::Pooled {
                match n.next_free(family) {
                    Some((_, g)) => {
                        n.held.insert((family, g), Owner::PeerGateway(owner.into()));
                    }
                    None => {
                        (n.held, n.cursors) = saved;
                        return Outcome::Refused(ModelError::Exhausted {
                            network: name.into(),
                            family,
                            pools: vec![],
                        });
                    }
                }
            }
        }
        Outcome::Done(given)
    }

    fn release(&mut self, name: &str, owner: &str) -> Outcome {
        let Some(n) = self.nets.get_mut(name) else {
            return Outcome::Refused(ModelError::NoSuchNetwork { name: name.into() });
        };
        let mut released = vec![];
        n.held.retain(|(f, a), o| {
            let mine = matches!(o, Owner::Endpoint(id) | Owner::PeerGateway(id) if id == owner);
            if mine {
                released.push(from_u128(*f, *a));
            }
            !mine
        });
        released.sort();
        Outcome::Done(released)
    }
}

fn outcome<T>(r: Result<T, StoreError>, ok: impl FnOnce(T) -> Vec<IpAddr>) -> Outcome {
    match r {
        Ok(v) => Outcome::Done(ok(v)),
        Err(StoreError::Model(e)) => Outcome::Refused(e),
        Err(e) => panic!("store failed: {e}"),
    }
}

fn static_ip(reference: &Reference, name: &str, (cand, offset): (usize, u8)) -> IpAddr {
    // Mostly an address of the network's own subnets, sometimes any candidate.
    let cidr = match reference.nets.get(name) {
        Some(n) if cand % 3 != 0 => n.net.subnets[cand % n.net.subnets.len()].subnet,
        _ => netloom_model::Cidr::parse("subnet", SUBNETS[cand]).unwrap(),
    };
    let n = cidr.first() + (offset as u128 % cidr.size().min(256));
    from_u128(cidr.family(), n)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = TempDir::new("state-machine");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut reference = Reference::default();
    for (step, op) in ops.iter().enumerate() {
        let (got, want) = match op {
            Op::Create { .. } => {
                let req = request(op);
                (
                    outcome(store.create_network(&req), |_| vec![]),
                    reference.create(&req),
                )
            }
            Op::Remove { name, force } => (
                outcome(store.remove_network(&net_name(*name), *force), |_| vec![]),
                reference.remove(&net_name(*name), *force),
            ),
            Op::Allocate {
                name,
                owner,
                statics,
            } => {
                let name = net_name(*name);
                let ips: Vec<IpAddr> = statics
                    .iter()
                    .map(|s| static_ip(&reference, &name, *s))
                    .collect();
                (
                    outcome(store.allocate(&name, &owner_name(*owner), &ips), |ls| {
                        ls.iter().map(|l| l.ip).collect()
                    }),
                    reference.allocate(&name, &owner_name(*owner), &ips),
                )
            }
            Op::Release { name, owner } => (
                outcome(store.release(&net_name(*name), &owner_name(*owner)), |rs| {
                    let mut v: Vec<IpAddr> = rs.iter().map(|a| a.address).collect();
                    v.sort();
                    v
                }),
                reference.release(&net_name(*name), &owner_name(*owner)),
            ),
        };
        prop_assert_eq!(&got, &want, "step {}: {:?}", step, op);

        let state = store.snapshot().unwrap();
        let violations = invariants::check(&state);
        prop_assert!(
            violations.is_empty(),
            "step {}: {:?}: {:?}",
            step,
            op,
            violations
        );
        // The store holds exactly what the reference holds.
        let mut have: Vec<(String, IpAddr, Owner)> = state
            .allocations
            .iter()
            .map(|a| (a.network.clone(), a.address, a.owner.clone()))
            .collect();
        let mut expect: Vec<(String, IpAddr, Owner)> = reference
            .nets
            .values()
            .flat_map(|n| {
                n.held
                    .iter()
                    .map(|((f, a), o)| (n.net.name.clone(), from_u128(*f, *a), o.clone()))
            })
            .collect();
        have.sort();
        expect.sort();
        prop_assert_eq!(have, expect, "step {}: {:?}", step, op);
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("NETLOOM_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// 100 cases × 100 steps = 10,000 steps per run.
    #[test]
    fn store_matches_reference_and_keeps_invariants(ops in prop::collection::vec(op(), STEPS)) {
        run(ops)?;
    }
}

/// The invariant checker is not vacuous: it sees a violation of each kind.
#[test]
fn checker_reports_broken_states() {
    let dir = TempDir::new("broken");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let req = NetworkRequest {
        name: "a".into(),
        subnets: vec!["10.9.0.0/24".into()],
        ..Default::default()
    };
    store.create_network(&req).unwrap();
    let pooled = NetworkRequest {
        name: "p".into(),
        subnets: vec!["10.8.0.0/24".into()],
        mode: Mode::Pooled,
        ..Default::default()
    };
    store.create_network(&pooled).unwrap();
    store.allocate("a", "x", &[]).unwrap();
    store.allocate("p", "y", &[]).unwrap();
    let good = store.snapshot().unwrap();
    assert!(invariants::check(&good).is_empty());

    let broken = |f: &dyn Fn(&mut netloom_model::State)| {
        let mut s = good.clone();
        f(&mut s);
        invariants::check(&s)
            .into_iter()
            .map(|v| v.invariant)
            .collect::<Vec<u8>>()
    };
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let x = |s: &netloom_model::State| {
        s.allocations
            .iter()
            .position(|a| a.owner == Owner::Endpoint("x".into()))
            .unwrap()
    };
    // 1: an endpoint on the gateway, on the broadcast address.
    assert!(broken(&|s| {
        let i = x(s);
        s.allocations[i].address = ip("10.9.0.255")
    })
    .contains(&1));
    // 2: an address outside its pool; an address with two owners.
    assert!(broken(&|s| {
        let i = x(s);
        s.allocations[i].address = ip("10.7.0.5")
    })
    .contains(&2));
    assert!(broken(&|s| {
        let i = x(s);
        s.allocations[i].address = ip("10.9.0.1")
    })
    .contains(&2));
    // 3: two endpoints share an address; two networks overlap.
    assert!(broken(&|s| {
        let mut dup = s.allocations[x(s)].clone();
        dup.owner = Owner::Endpoint("z".into());
        s.allocations.push(dup);
    })
    .contains(&3));
    assert!(
        broken(&|s| s.networks[1].subnets[0].subnet = "10.9.0.0/25".parse().unwrap()).contains(&3)
    );
    // 4: a pooled endpoint without its gateway; a shared one with a private gateway.
    assert!(broken(&|s| s
        .allocations
        .retain(|a| !matches!(a.owner, Owner::PeerGateway(_))))
    .contains(&4));
    assert!(broken(&|s| {
        let mut g = s.allocations[x(s)].clone();
        g.owner = Owner::PeerGateway("x".into());
        g.address = ip("10.9.0.77");
        s.allocations.push(g);
    })
    .contains(&4));
    // 5: one owner with two addresses of a family.
    assert!(broken(&|s| {
        let mut a = s.allocations[x(s)].clone();
        a.address = ip("10.9.0.78");
        s.allocations.push(a);
    })
    .contains(&5));
}
