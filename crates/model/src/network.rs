//! Networks and their subnets, and the validation of what a user asks for.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::addr::{from_u128, parse_ip, Cidr, Family};
use crate::error::ModelError;

/// How dynamic addresses are picked within a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The next free address after the last one handed out, wrapping around.
    /// Avoids reusing a just-freed address while stale ARP and conntrack
    /// entries for it linger.
    #[default]
    Sequential,
    /// The lowest free address.
    Lowest,
}

impl FromStr for Policy {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sequential" => Ok(Policy::Sequential),
            "lowest" => Ok(Policy::Lowest),
            _ => Err(ModelError::Malformed {
                what: "IPAM policy".into(),
                value: s.into(),
                why: "expected \"sequential\" or \"lowest\"".into(),
            }),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Sequential => "sequential",
            Policy::Lowest => "lowest",
        })
    }
}

/// How endpoints relate to the subnets (seeds/002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Endpoints share the subnet and its one gateway (`CNetPairShared`).
    #[default]
    Shared,
    /// Routed: each endpoint gets `ip/32` (or /128) and a gateway of its own,
    /// both taken from the pool (`CNetPooled`, `CNCreateFromPool`).
    Pooled,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Shared => "shared",
            Mode::Pooled => "pooled",
        })
    }
}

/// One subnet of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet: Cidr,
    /// The shared gateway; `None` in pooled mode, where each endpoint has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Where dynamic addresses come from; the whole subnet when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Cidr>,
    /// Addresses kept out of allocation, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub aux_addresses: BTreeMap<String, IpAddr>,
}

impl Subnet {
    pub fn family(&self) -> Family {
        self.subnet.family()
    }

    /// Lowest and highest address handed out dynamically.
    pub fn pool_bounds(&self) -> (u128, u128) {
        let (lo, hi) = self.subnet.host_bounds();
        match self.ip_range {
            Some(r) => (lo.max(r.first()), hi.min(r.last())),
            None => (lo, hi),
        }
    }

    /// How many addresses dynamic allocation can draw from.
    pub fn pool_size(&self) -> u128 {
        let (lo, hi) = self.pool_bounds();
        if lo > hi {
            0
        } else {
            (hi - lo).saturating_add(1)
        }
    }

    /// The dynamic pool as text: the range if set, else the subnet.
    pub fn pool_cidr(&self) -> Cidr {
        self.ip_range.unwrap_or(self.subnet)
    }
}

/// A network as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub address_space: String,
    pub mode: Mode,
    pub ipam_policy: Policy,
    pub internal: bool,
    pub subnets: Vec<Subnet>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Network {
    pub fn cidrs(&self) -> Vec<Cidr> {
        self.subnets.iter().map(|s| s.subnet).collect()
    }

    pub fn families(&self) -> Vec<Family> {
        let mut f: Vec<Family> = self.subnets.iter().map(|s| s.family()).collect();
        f.sort();
        f.dedup();
        f
    }

    /// Checks that `ip` may be given to an endpoint on this network and
    /// returns the index of its subnet.
    pub fn check_static(&self, ip: IpAddr) -> Result<usize, ModelError> {
        let family = Family::of(&ip);
        if !self.subnets.iter().any(|s| s.family() == family) {
            return Err(ModelError::NoSubnetOfFamily {
                network: self.name.clone(),
                ip,
                subnets: self.cidrs(),
            });
        }
        let (idx, s) = self
            .subnets
            .iter()
            .enumerate()
            .find(|(_, s)| s.subnet.contains(&ip))
            .ok_or_else(|| ModelError::OutsideSubnets {
                network: self.name.clone(),
                ip,
                subnets: self
                    .subnets
                    .iter()
                    .filter(|s| s.family() == family)
                    .map(|s| s.subnet)
                    .collect(),
            })?;
        if let Some(role) = s.subnet.reserved_role(&ip) {
            return Err(ModelError::ReservedRole {
                network: self.name.clone(),
                ip,
                subnet: s.subnet,
                role,
            });
        }
        if s.gateway == Some(ip) {
            return Err(ModelError::IsGateway {
                network: self.name.clone(),
                ip,
                subnet: s.subnet,
            });
        }
        Ok(idx)
    }
}

/// What a user asks for when creating a network, as text (from flags, a
/// config file or a plugin request). [`NetworkRequest::validate`] turns it
/// into a [`Network`] or says precisely what is wrong.
#[derive(Debug, Clone, Default)]
pub struct NetworkRequest {
    pub name: String,
    pub driver: String,
    pub subnets: Vec<String>,
    pub gateways: Vec<String>,
    pub ip_ranges: Vec<String>,
    /// `NAME=IP`
    pub aux_addresses: Vec<String>,
    pub address_space: Option<String>,
    pub ipam_policy: Policy,
    pub mode: Mode,
    pub internal: bool,
    pub options: BTreeMap<String, String>,
}

/// Names of networks, address spaces, owners: what may appear in kernel
/// object names and file names without quoting.
pub fn check_name(what: &str, name: &str) -> Result<(), ModelError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let why = if name.is_empty() {
        "it is empty"
    } else if name.len() > 64 {
        "it is longer than 64 characters"
    } else if !name.chars().all(ok_char) {
        "it may contain only letters, digits, '_', '.' and '-'"
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "it must start with a letter or digit"
    } else {
        return Ok(());
    };
    Err(ModelError::Malformed {
        what: what.to_string(),
        value: name.to_string(),
        why: why.to_string(),
    })
}

impl NetworkRequest {
    /// Validates everything that can be checked without knowing other
    /// networks. Gateways, ranges and aux addresses go to the subnet that
    /// contains them. `id` is the new network's id.
    pub fn validate(&self, id: &str) -> Result<Network, ModelError> {
        check_name("network name", &self.name)?;
        let space = self.address_space.clone().unwrap_or_else(|| "local".into());
        check_name("address space", &space)?;
        let object = format!("network {:?}", self.name);
        if self.subnets.is_empty() {
            return Err(ModelError::Invalid {
                object,
                why: "no subnet given".into(),
                fix: "add --subnet CIDR (e.g. --subnet 10.88.0.0/24, and --subnet fd00:88::/64 for IPv6)"
                    .into(),
            });
        }
        let mut subnets: Vec<Subnet> = Vec::new();
        for text in &self.subnets {
            let cidr = Cidr::parse("subnet", text)?;
            if let Some(other) = subnets.iter().find(|s| s.subnet.overlaps(&cidr)) {
                return Err(ModelError::Invalid {
                    object,
                    why: format!("subnets {} and {cidr} overlap", other.subnet),
                    fix: "give disjoint subnets".into(),
                });
            }
            subnets.push(Subnet {
                subnet: cidr,
                gateway: None,
                ip_range: None,
                aux_addresses: BTreeMap::new(),
            });
        }
        let cidrs: Vec<Cidr> = subnets.iter().map(|s| s.subnet).collect();
        let not_in = |what: &str, value: String| ModelError::NotInSubnet {
            network: self.name.clone(),
            what: what.to_string(),
            value,
            subnets: cidrs.clone(),
        };

        for text in &self.ip_ranges {
            let range = Cidr::parse("IP range", text)?;
            let s = subnets
                .iter_mut()
                .find(|s| s.subnet.contains_cidr(&range))
                .ok_or_else(|| not_in("IP range", range.to_string()))?;
            if let Some(prev) = s.ip_range {
                return Err(ModelError::Invalid {
                    object,
                    why: format!("subnet {} has two IP ranges ({prev} and {range})", s.subnet),
                    fix: "give at most one --ip-range per subnet".into(),
                });
            }
            s.ip_range = Some(range);
            if s.pool_size() == 0 {
                return Err(ModelError::Invalid {
                    object,
                    why: format!(
                        "IP range {range} holds no assignable address of subnet {}",
                        s.subnet
                    ),
                    fix: "give a wider --ip-range".into(),
                });
            }
        }

        for text in &self.gateways {
            let gw = parse_ip("gateway", text)?;
            if self.mode == Mode::Pooled {
                return Err(ModelError::Invalid {
                    object,
                    why: format!("gateway {gw} was given, but in pooled (routed) mode every endpoint gets a gateway of its own from the pool"),
                    fix: "drop --gateway".into(),
                });
            }
            let s = subnets
                .iter_mut()
                .find(|s| s.subnet.contains(&gw))
                .ok_or_else(|| not_in("gateway", gw.to_string()))?;
            if let Some(role) = s.subnet.reserved_role(&gw) {
                return Err(ModelError::Invalid {
                    object,
                    why: format!("gateway {gw} is {role} of {}", s.subnet),
                    fix: "choose a host address of the subnet".into(),
                });
            }
            if let Some(prev) = s.gateway {
                return Err(ModelError::Invalid {
                    object,
                    why: format!("subnet {} has two gateways ({prev} and {gw})", s.subnet),
                    fix: "give at most one --gateway per subnet".into(),
                });
            }
            s.gateway = Some(gw);
        }
        if self.mode == Mode::Shared {
            for s in subnets.iter_mut().filter(|s| s.gateway.is_none()) {
                let (lo, hi) = s.subnet.host_bounds();
                if lo >= hi {
                    return Err(ModelError::Invalid {
                        object,
                        why: format!(
                            "subnet {} is too small for a gateway and an endpoint",
                            s.subnet
                        ),
                        fix: "use a subnet of at least 4 IPv4 addresses (a /30)".into(),
                    });
                }
                s.gateway = Some(from_u128(s.family(), lo));
            }
        }

        for text in &self.aux_addresses {
            let (name, ip_text) = text.split_once('=').ok_or_else(|| ModelError::Malformed {
                what: "aux address".into(),
                value: text.clone(),
                why: "expected NAME=IP, e.g. router=10.88.0.2".into(),
            })?;
            check_name("aux address name", name)?;
            let ip = parse_ip("aux address", ip_text)?;
            if subnets.iter().any(|s| s.aux_addresses.contains_key(name)) {
                return Err(ModelError::Invalid {
                    object,
                    why: format!("aux address name {name:?} is given twice"),
                    fix: "give each --aux-address a distinct name".into(),
                });
            }
            let s = subnets
                .iter_mut()
                .find(|s| s.subnet.contains(&ip))
                .ok_or_else(|| not_in(&format!("aux address {name:?}"), ip.to_string()))?;
            if let Some(role) = s.subnet.reserved_role(&ip) {
                return Err(ModelError::Invalid {
                    object,
                    why: format!("aux address {name:?} ({ip}) is {role} of {}", s.subnet),
                    fix: "choose a host address of the subnet".into(),
                });
            }
            if s.gateway == Some(ip) || s.aux_addresses.values().any(|a| *a == ip) {
                return Err(ModelError::Invalid {
                    object,
                    why: format!(
                        "aux address {name:?} ({ip}) is already the gateway or another aux address"
                    ),
                    fix: "choose a distinct address".into(),
                });
            }
            s.aux_addresses.insert(name.to_string(), ip);
        }

        Ok(Network {
            id: id.to_string(),
            name: self.name.clone(),
            driver: if self.driver.is_empty() {
                "null".into()
            } else {
                self.driver.clone()
            },
            address_space: space,
            mode: self.mode,
            ipam_policy: self.ipam_policy,
            internal: self.internal,
            subnets,
            options: self.options.clone(),
        })
    }
}

/// Whether two networks' subnets may coexist: the first overlap found, if any.
pub fn first_overlap(a: &Network, b: &Network) -> Option<(Cidr, Cidr)> {
    if a.address_space != b.address_space {
        return None;
    }
    a.subnets.iter().find_map(|x| {
        b.subnets
            .iter()
            .find(|y| x.subnet.overlaps(&y.subnet))
            .map(|y| (x.subnet, y.subnet))
    })
}
