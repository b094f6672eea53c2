//! The invariants of seeds/002 (DESIGN.md "Model", 1–5) as executable
//! predicates over a snapshot of the state. Tests run them after every
//! mutation; `netloom check` runs them over the live store.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::addr::Family;
use crate::alloc::{Allocation, Owner};
use crate::network::{first_overlap, Mode, Network};

/// Everything the invariants speak about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct State {
    pub networks: Vec<Network>,
    pub allocations: Vec<Allocation>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The invariant's number in DESIGN.md ("Model").
    pub invariant: u8,
    /// What is wrong, naming the objects.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant {}: {}", self.invariant, self.message)
    }
}

/// Runs invariants 1–5 and returns every violation (empty when all hold).
pub fn check(state: &State) -> Vec<Violation> {
    let mut out = Vec::new();
    let by_name: BTreeMap<&str, &Network> = state
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n))
        .collect();
    let mut per_net: BTreeMap<&str, Vec<&Allocation>> = BTreeMap::new();
    for a in &state.allocations {
        per_net.entry(a.network.as_str()).or_default().push(a);
    }
    for (name, allocs) in &per_net {
        match by_name.get(name) {
            Some(net) => check_network(net, allocs, &mut out),
            None => out.push(Violation {
                invariant: 2,
                message: format!(
                    "{} allocation(s) belong to network {name:?}, which does not exist",
                    allocs.len()
                ),
            }),
        }
    }
    for net in &state.networks {
        if !per_net.contains_key(net.name.as_str()) {
            check_network(net, &[], &mut out);
        }
    }
    check_disjoint_networks(&state.networks, &mut out);
    out
}

fn v(out: &mut Vec<Violation>, invariant: u8, message: String) {
    out.push(Violation { invariant, message });
}

fn check_network(net: &Network, allocs: &[&Allocation], out: &mut Vec<Violation>) {
    let n = &net.name;
    // Invariant 2: every allocated address lies in its pool and has exactly one owner.
    let mut holders: BTreeMap<IpAddr, Vec<&Owner>> = BTreeMap::new();
    for a in allocs {
        holders.entry(a.address).or_default().push(&a.owner);
        match net.subnets.iter().find(|s| s.subnet == a.subnet) {
            None => v(
                out,
                2,
                format!(
                    "network {n:?}: {} ({}) was taken from {}, which is not a subnet of the network",
                    a.address, a.owner, a.subnet
                ),
            ),
            Some(s) if !s.subnet.contains(&a.address) => v(
                out,
                2,
                format!(
                    "network {n:?}: {} ({}) is outside its pool {}",
                    a.address, a.owner, s.subnet
                ),
            ),
            Some(_) => {}
        }
    }
    for (ip, owners) in &holders {
        if owners.len() > 1 {
            let names: Vec<String> = owners.iter().map(|o| o.to_string()).collect();
            let both_endpoints = owners
                .iter()
                .filter(|o| matches!(o, Owner::Endpoint(_)))
                .count()
                > 1;
            v(
                out,
                if both_endpoints { 3 } else { 2 },
                format!(
                    "network {n:?}: {ip} has {} owners: {}",
                    owners.len(),
                    names.join(", ")
                ),
            );
        }
    }
    // Gateways and reservations are allocated exactly as configured.
    for s in &net.subnets {
        let gws: Vec<&&Allocation> = allocs
            .iter()
            .filter(|a| a.owner == Owner::Gateway && a.subnet == s.subnet)
            .collect();
        match (s.gateway, gws.as_slice()) {
            (Some(g), [a]) if a.address == g => {}
            (None, []) => {}
            (want, got) => v(
                out,
                2,
                format!(
                    "network {n:?}: subnet {} should have gateway {} allocated, but holds {}",
                    s.subnet,
                    want.map_or("none".to_string(), |g| g.to_string()),
                    if got.is_empty() {
                        "none".to_string()
                    } else {
                        got.iter()
                            .map(|a| a.address.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ),
        }
        for (name, ip) in &s.aux_addresses {
            let held = allocs
                .iter()
                .any(|a| a.owner == Owner::Reserved(name.clone()) && a.address == *ip);
            if !held {
                v(
                    out,
                    2,
                    format!(
                        "network {n:?}: aux address {name:?} ({ip}) is not held by its reservation"
                    ),
                );
            }
        }
    }
    for a in allocs {
        if let Owner::Reserved(name) = &a.owner {
            let configured = net
                .subnets
                .iter()
                .any(|s| s.aux_addresses.get(name) == Some(&a.address));
            if !configured {
                v(
                    out,
                    2,
                    format!(
                        "network {n:?}: reservation {name:?} holds {}, which is not configured",
                        a.address
                    ),
                );
            }
        }
    }
    // Invariant 1: endpoint addresses are host addresses of their subnet, not the gateway.
    for a in allocs {
        if !matches!(
            a.owner,
            Owner::Endpoint(_) | Owner::PeerGateway(_) | Owner::Gateway
        ) {
            continue;
        }
        let Some(s) = net.subnets.iter().find(|s| s.subnet == a.subnet) else {
            continue;
        };
        if let Some(role) = s.subnet.reserved_role(&a.address) {
            v(
                out,
                1,
                format!(
                    "network {n:?}: {} holds {}, {role} of {}",
                    a.owner, a.address, s.subnet
                ),
            );
        }
        if matches!(a.owner, Owner::Endpoint(_)) && s.gateway == Some(a.address) {
            v(
                out,
                1,
                format!(
                    "network {n:?}: {} holds {}, the gateway of {}",
                    a.owner, a.address, s.subnet
                ),
            );
        }
    }
    check_owners(net, allocs, out);
}

/// Invariants 4 (pooled mode) and 5 (one endpoint per owner and family).
fn check_owners(net: &Network, allocs: &[&Allocation], out: &mut Vec<Violation>) {
    let n = &net.name;
    let mut endpoints: BTreeMap<(&str, Family), Vec<IpAddr>> = BTreeMap::new();
    let mut peer_gws: BTreeMap<(&str, Family), Vec<IpAddr>> = BTreeMap::new();
    for a in allocs {
        let f = Family::of(&a.address);
        match &a.owner {
            Owner::Endpoint(id) => endpoints.entry((id, f)).or_default().push(a.address),
            Owner::PeerGateway(id) => peer_gws.entry((id, f)).or_default().push(a.address),
            _ => {}
        }
    }
    for ((id, f), ips) in &endpoints {
        if ips.len() > 1 {
            v(
                out,
                5,
                format!(
                    "network {n:?}: owner {id:?} holds {} {f} addresses: {ips:?}",
                    ips.len()
                ),
            );
        }
        if net.mode == Mode::Pooled {
            match peer_gws.get(&(*id, *f)).map(|g| g.as_slice()) {
                Some([gw]) if !ips.contains(gw) => {}
                Some([gw]) => v(
                    out,
                    4,
                    format!("network {n:?}: owner {id:?} has gateway {gw} equal to its own address"),
                ),
                other => v(
                    out,
                    4,
                    format!(
                        "network {n:?} is pooled, but owner {id:?} holds {} {f} gateway(s) instead of exactly one",
                        other.map_or(0, |g| g.len())
                    ),
                ),
            }
        }
    }
    for ((id, f), gws) in &peer_gws {
        if net.mode == Mode::Shared {
            v(
                out,
                4,
                format!(
                    "network {n:?} is shared, but owner {id:?} holds private gateway(s) {gws:?}"
                ),
            );
        } else if !endpoints.contains_key(&(*id, *f)) {
            v(
                out,
                4,
                format!("network {n:?}: {f} gateway(s) {gws:?} of owner {id:?} have no endpoint address"),
            );
        }
    }
}

/// Invariant 3: in one address space the subnets of two networks are disjoint.
fn check_disjoint_networks(networks: &[Network], out: &mut Vec<Violation>) {
    let names: BTreeSet<&str> = networks.iter().map(|n| n.name.as_str()).collect();
    if names.len() != networks.len() {
        v(out, 3, "two networks share a name".to_string());
    }
    for (i, a) in networks.iter().enumerate() {
        for b in &networks[i + 1..] {
            if let Some((x, y)) = first_overlap(a, b) {
                v(
                    out,
                    3,
                    format!(
                        "networks {:?} ({x}) and {:?} ({y}) overlap in address space {:?}",
                        a.name, b.name, a.address_space
                    ),
                );
            }
        }
    }
}
