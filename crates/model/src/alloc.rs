//! Allocations and the search for a free address.
//!
//! The free set is never stored: it is `pool \ allocated`, derived on demand
//! from the ordered list of allocated addresses. That keeps an IPv6 /64 pool
//! as cheap as an IPv4 /30.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

use crate::addr::{Cidr, Family};
use crate::network::Policy;

/// Who holds an allocated address. Every allocated address has exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "kebab-case")]
pub enum Owner {
    /// An endpoint or IPAM client, by its owner id.
    Endpoint(String),
    /// The private gateway address of an endpoint in pooled (routed) mode.
    PeerGateway(String),
    /// The gateway of a shared subnet.
    Gateway,
    /// An address kept out of allocation (`--aux-address NAME=IP`).
    Reserved(String),
}

impl Owner {
    /// Kind as stored: endpoint, peer-gateway, gateway, reserved.
    pub fn kind(&self) -> &'static str {
        match self {
            Owner::Endpoint(_) => "endpoint",
            Owner::PeerGateway(_) => "peer-gateway",
            Owner::Gateway => "gateway",
            Owner::Reserved(_) => "reserved",
        }
    }

    /// The id as stored ("" for the gateway).
    pub fn id(&self) -> &str {
        match self {
            Owner::Endpoint(id) | Owner::PeerGateway(id) | Owner::Reserved(id) => id,
            Owner::Gateway => "",
        }
    }

    pub fn from_parts(kind: &str, id: &str) -> Option<Owner> {
        Some(match kind {
            "endpoint" => Owner::Endpoint(id.to_string()),
            "peer-gateway" => Owner::PeerGateway(id.to_string()),
            "gateway" => Owner::Gateway,
            "reserved" => Owner::Reserved(id.to_string()),
            _ => return None,
        })
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Endpoint(id) => write!(f, "owner {id:?}"),
            Owner::PeerGateway(id) => write!(f, "the gateway of owner {id:?}"),
            Owner::Gateway => f.write_str("the network's gateway"),
            Owner::Reserved(name) => write!(f, "reservation {name:?}"),
        }
    }
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Network name.
    pub network: String,
    /// The network subnet (pool) the address was taken from.
    pub subnet: Cidr,
    pub address: IpAddr,
    pub owner: Owner,
}

/// What an owner was given on one network, one entry per family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub family: Family,
    /// The address with the prefix length the endpoint uses: the subnet's in
    /// shared mode, /32 or /128 in pooled mode.
    pub address: String,
    #[serde(skip)]
    pub ip: IpAddr,
    pub gateway: Option<IpAddr>,
    /// The network subnet the address came from.
    pub subnet: Cidr,
}

/// The first free address in `[from, hi]`, given the allocated addresses that
/// are `>= from` in ascending order (later ones may be ignored).
pub fn first_free(
    from: u128,
    hi: u128,
    taken_from: impl IntoIterator<Item = u128>,
) -> Option<u128> {
    if from > hi {
        return None;
    }
    let mut candidate = from;
    for t in taken_from {
        if t > candidate {
            break;
        }
        if t == candidate {
            if candidate == hi {
                return None;
            }
            candidate += 1;
        }
    }
    Some(candidate)
}

/// The stretches of `[lo, hi]` to search, in order, for the given policy.
/// `cursor` is the last address handed out dynamically in this pool.
/// Sequential: after the cursor up to `hi`, then wrapping from `lo` up to the
/// cursor. Lowest: the whole pool from `lo`.
pub fn search_order(policy: Policy, lo: u128, hi: u128, cursor: Option<u128>) -> Vec<(u128, u128)> {
    if lo > hi {
        return Vec::new();
    }
    match (policy, cursor) {
        (Policy::Sequential, Some(c)) if c >= lo && c < hi => vec![(c + 1, hi), (lo, c)],
        _ => vec![(lo, hi)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_free_skips_runs() {
        assert_eq!(first_free(10, 20, []), Some(10));
        assert_eq!(first_free(10, 20, [10, 11, 12, 15]), Some(13));
        assert_eq!(first_free(10, 12, [10, 11, 12]), None);
        assert_eq!(first_free(10, 20, [12, 13]), Some(10));
        assert_eq!(first_free(5, 4, []), None);
        assert_eq!(
            first_free(u128::MAX - 1, u128::MAX, [u128::MAX - 1]),
            Some(u128::MAX)
        );
        assert_eq!(first_free(u128::MAX, u128::MAX, [u128::MAX]), None);
    }

    #[test]
    fn sequential_wraps_after_cursor() {
        assert_eq!(
            search_order(Policy::Sequential, 1, 10, Some(4)),
            vec![(5, 10), (1, 4)]
        );
        assert_eq!(
            search_order(Policy::Sequential, 1, 10, Some(10)),
            vec![(1, 10)]
        );
        assert_eq!(search_order(Policy::Sequential, 1, 10, None), vec![(1, 10)]);
        assert_eq!(search_order(Policy::Lowest, 1, 10, Some(4)), vec![(1, 10)]);
        // A cursor left outside a range that was changed is ignored.
        assert_eq!(
            search_order(Policy::Sequential, 1, 10, Some(40)),
            vec![(1, 10)]
        );
    }

    #[test]
    fn owners_round_trip_through_their_parts() {
        for o in [
            Owner::Endpoint("c1".into()),
            Owner::PeerGateway("c1".into()),
            Owner::Gateway,
            Owner::Reserved("router".into()),
        ] {
            assert_eq!(Owner::from_parts(o.kind(), o.id()), Some(o.clone()));
        }
    }
}
