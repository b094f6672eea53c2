//! Errors of the address model. Each names the object, the cause, and what
//! to do about it.

use std::fmt;
use std::net::IpAddr;

use crate::addr::{Cidr, Family};
use crate::alloc::Owner;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// A value that does not parse.
    Malformed {
        what: String,
        value: String,
        why: String,
    },
    /// A setting that parses but cannot be used; `fix` says what to do.
    Invalid {
        object: String,
        why: String,
        fix: String,
    },
    NoSuchNetwork {
        name: String,
    },
    NetworkExists {
        name: String,
    },
    /// A subnet that overlaps one of another network in the same address space.
    Overlap {
        network: String,
        subnet: Cidr,
        other_network: String,
        other_subnet: Cidr,
        address_space: String,
    },
    /// A gateway, range or reserved address that lies in none of the subnets.
    NotInSubnet {
        network: String,
        what: String,
        value: String,
        subnets: Vec<Cidr>,
    },
    /// A requested address outside every subnet of its family.
    OutsideSubnets {
        network: String,
        ip: IpAddr,
        subnets: Vec<Cidr>,
    },
    /// A requested address of a family the network has no subnet for.
    NoSubnetOfFamily {
        network: String,
        ip: IpAddr,
        subnets: Vec<Cidr>,
    },
    IsGateway {
        network: String,
        ip: IpAddr,
        subnet: Cidr,
    },
    /// The network, broadcast or subnet-router anycast address.
    ReservedRole {
        network: String,
        ip: IpAddr,
        subnet: Cidr,
        role: &'static str,
    },
    AlreadyAllocated {
        network: String,
        ip: IpAddr,
        holder: Owner,
    },
    /// No free address is left in any pool of a family.
    Exhausted {
        network: String,
        family: Family,
        /// Each pool searched, with how many addresses a host may hold there.
        pools: Vec<(Cidr, u128)>,
    },
    /// The owner already holds addresses on the network.
    OwnerExists {
        network: String,
        owner: String,
        holds: Vec<IpAddr>,
    },
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ModelError::*;
        match self {
            Malformed { what, value, why } => write!(f, "invalid {what} {value:?}: {why}"),
            Invalid { object, why, fix } => write!(f, "{object}: {why}; {fix}"),
            NoSuchNetwork { name } => write!(
                f,
                "network {name:?} does not exist; `netloom network ls` lists the networks"
            ),
            NetworkExists { name } => write!(
                f,
                "network {name:?} already exists; choose another name or remove it with `netloom network rm {name}`"
            ),
            Overlap {
                network,
                subnet,
                other_network,
                other_subnet,
                address_space,
            } => write!(
                f,
                "network {network:?}: subnet {subnet} overlaps network {other_network:?} ({other_subnet}) in address space {address_space:?}; choose a disjoint subnet or another --address-space"
            ),
            NotInSubnet {
                network,
                what,
                value,
                subnets,
            } => write!(
                f,
                "network {network:?}: {what} {value} is not inside any of its subnets ({}); give one inside a subnet",
                list(subnets)
            ),
            OutsideSubnets {
                network,
                ip,
                subnets,
            } => write!(
                f,
                "network {network:?}: address {ip} is outside its subnets ({}); request an address inside one",
                list(subnets)
            ),
            NoSubnetOfFamily {
                network,
                ip,
                subnets,
            } => {
                let family = Family::of(ip);
                write!(
                    f,
                    "network {network:?}: it has no {family} subnet, so {ip} cannot be assigned (its subnets: {}); request an address of the network's family or add a {family} subnet",
                    list(subnets)
                )
            }
            IsGateway {
                network,
                ip,
                subnet,
            } => write!(
                f,
                "network {network:?}: address {ip} is the gateway of {subnet}; request another address"
            ),
            ReservedRole {
                network,
                ip,
                subnet,
                role,
            } => write!(
                f,
                "network {network:?}: address {ip} is {role} of {subnet} and cannot be assigned; request an address inside the host range"
            ),
            AlreadyAllocated {
                network,
                ip,
                holder,
            } => write!(
                f,
                "network {network:?}: address {ip} is already allocated to {holder}; request another address or release it first"
            ),
            Exhausted {
                network,
                family,
                pools,
            } => {
                let total: u128 = pools.iter().map(|(_, n)| *n).fold(0, u128::saturating_add);
                let pools: Vec<String> = pools.iter().map(|(c, _)| c.to_string()).collect();
                write!(
                    f,
                    "network {network:?}: no free {family} address: all {total} assignable addresses of {} are in use; release some or add a subnet",
                    pools.join(", ")
                )
            }
            OwnerExists {
                network,
                owner,
                holds,
            } => write!(
                f,
                "network {network:?}: owner {owner:?} already holds {}; release it first (`netloom ipam release {network} --owner {owner}`)",
                list(holds)
            ),
        }
    }
}

impl std::error::Error for ModelError {}
