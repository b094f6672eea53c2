//! IP addresses as numbers, and CIDR prefixes.
//!
//! Every address is handled as a `u128` inside a [`Family`]: IPv4 addresses
//! use the low 32 bits. Arithmetic on numbers keeps pool logic identical for
//! both families and lets IPv6 /64 pools work without per-address memory.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::ModelError;

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The number stored for this family in the store (4 or 6).
    pub fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    pub fn from_number(n: i64) -> Option<Family> {
        match n {
            4 => Some(Family::V4),
            6 => Some(Family::V6),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An address as a number (IPv4 in the low 32 bits).
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address for a number in a family. IPv4 numbers must fit in 32 bits.
pub fn from_u128(family: Family, n: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// Parses an IP address, naming `what` it is in the error.
pub fn parse_ip(what: &str, text: &str) -> Result<IpAddr, ModelError> {
    IpAddr::from_str(text.trim()).map_err(|_| ModelError::Malformed {
        what: what.to_string(),
        value: text.to_string(),
        why: "not an IPv4 or IPv6 address".to_string(),
    })
}

/// A prefix such as `10.1.0.0/24` or `fd00::/64`. The address is always the
/// network address (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A prefix from an address and length; the host bits of `addr` must be zero.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, ModelError> {
        let family = Family::of(&addr);
        let text = format!("{addr}/{prefix}");
        if prefix > family.bits() {
            return Err(ModelError::Malformed {
                what: "CIDR".into(),
                value: text,
                why: format!(
                    "prefix length {prefix} is longer than {} bits for {family}",
                    family.bits()
                ),
            });
        }
        let cidr = Cidr { addr, prefix };
        let network = from_u128(family, cidr.first());
        if network != addr {
            return Err(ModelError::Malformed {
                what: "CIDR".into(),
                value: text,
                why: format!("host bits are set; did you mean {network}/{prefix}?"),
            });
        }
        Ok(cidr)
    }

    /// Parses `ADDR/LEN`, naming `what` (e.g. "subnet") in the error.
    pub fn parse(what: &str, text: &str) -> Result<Cidr, ModelError> {
        let malformed = |why: String| ModelError::Malformed {
            what: what.to_string(),
            value: text.to_string(),
            why,
        };
        let (a, p) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| malformed("expected ADDRESS/PREFIX-LENGTH, e.g. 10.1.0.0/24".into()))?;
        let addr = IpAddr::from_str(a)
            .map_err(|_| malformed(format!("{a:?} is not an IPv4 or IPv6 address")))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| malformed(format!("{p:?} is not a prefix length")))?;
        Cidr::new(addr, prefix).map_err(|e| match e {
            ModelError::Malformed { why, .. } => malformed(why),
            other => other,
        })
    }

    /// The single-address prefix of `ip` (/32 or /128).
    pub fn host(ip: IpAddr) -> Cidr {
        Cidr {
            addr: ip,
            prefix: Family::of(&ip).bits(),
        }
    }

    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn host_mask(&self) -> u128 {
        let host_bits = (self.family().bits() - self.prefix) as u32;
        if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        }
    }

    /// First address (the network address) as a number.
    pub fn first(&self) -> u128 {
        to_u128(self.addr) & !self.host_mask()
    }

    /// Last address (the IPv4 broadcast address) as a number.
    pub fn last(&self) -> u128 {
        self.first() | self.host_mask()
    }

    /// Number of addresses in the prefix (saturating at u128::MAX for ::/0).
    pub fn size(&self) -> u128 {
        self.host_mask().saturating_add(1)
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == self.family() && {
            let n = to_u128(*ip);
            n >= self.first() && n <= self.last()
        }
    }

    /// Whether `other` lies entirely inside this prefix.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.family() == self.family()
            && other.first() >= self.first()
            && other.last() <= self.last()
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.family() == other.family()
            && self.first() <= other.last()
            && other.first() <= self.last()
    }

    /// The lowest and highest addresses a host may hold: for IPv4 with a
    /// prefix shorter than /31 the network and broadcast addresses are
    /// excluded; for IPv6 shorter than /127 the subnet-router anycast address
    /// (the first one) is excluded.
    pub fn host_bounds(&self) -> (u128, u128) {
        let (first, last) = (self.first(), self.last());
        match self.family() {
            Family::V4 if self.prefix < 31 => (first + 1, last - 1),
            Family::V6 if self.prefix < 127 => (first + 1, last),
            _ => (first, last),
        }
    }

    /// Why `ip` may not be held by a host in this prefix, if it may not:
    /// "the network address", "the broadcast address" or "the subnet-router
    /// anycast address".
    pub fn reserved_role(&self, ip: &IpAddr) -> Option<&'static str> {
        if !self.contains(ip) {
            return None;
        }
        let n = to_u128(*ip);
        let (lo, hi) = self.host_bounds();
        if n < lo {
            Some(match self.family() {
                Family::V4 => "the network address",
                Family::V6 => "the subnet-router anycast address",
            })
        } else if n > hi {
            Some("the broadcast address")
        } else {
            None
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse("CIDR", s)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Cidr::parse("CIDR", &text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_bounds_ipv4() {
        let c = Cidr::parse("subnet", "10.1.0.0/24").unwrap();
        assert_eq!(c.size(), 256);
        let (lo, hi) = c.host_bounds();
        assert_eq!(from_u128(Family::V4, lo), ip("10.1.0.1"));
        assert_eq!(from_u128(Family::V4, hi), ip("10.1.0.254"));
        assert_eq!(
            c.reserved_role(&ip("10.1.0.0")),
            Some("the network address")
        );
        assert_eq!(
            c.reserved_role(&ip("10.1.0.255")),
            Some("the broadcast address")
        );
        assert_eq!(c.reserved_role(&ip("10.1.0.9")), None);
        assert!(!c.contains(&ip("10.1.1.0")));
    }

    #[test]
    fn point_to_point_prefixes_keep_every_address() {
        let c = Cidr::parse("subnet", "10.0.0.0/31").unwrap();
        assert_eq!(c.host_bounds(), (c.first(), c.last()));
        let h = Cidr::host(ip("10.0.0.7"));
        assert_eq!(h.host_bounds(), (h.first(), h.first()));
    }

    #[test]
    fn ipv6_bounds_and_size() {
        let c = Cidr::parse("subnet", "fd00:1::/64").unwrap();
        assert_eq!(c.size(), 1u128 << 64);
        assert_eq!(from_u128(Family::V6, c.host_bounds().0), ip("fd00:1::1"));
        assert!(Cidr::parse("subnet", "::/0").unwrap().size() == u128::MAX);
    }

    #[test]
    fn rejects_malformed_prefixes_with_reasons() {
        let e = Cidr::parse("subnet", "10.1.0.0/33")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("10.1.0.0/33") && e.contains("longer than 32"),
            "{e}"
        );
        let e = Cidr::parse("subnet", "10.1.0.5/24")
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean 10.1.0.0/24"), "{e}");
        let e = Cidr::parse("subnet", "10.1.0.0").unwrap_err().to_string();
        assert!(e.contains("ADDRESS/PREFIX-LENGTH"), "{e}");
        let e = Cidr::parse("subnet", "10.1.300.0/24")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an IPv4 or IPv6 address"), "{e}");
    }

    #[test]
    fn overlap_is_symmetric_and_family_bound() {
        let a = Cidr::parse("a", "10.1.0.0/16").unwrap();
        let b = Cidr::parse("b", "10.1.5.0/24").unwrap();
        let c = Cidr::parse("c", "10.2.0.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(a.contains_cidr(&b) && !b.contains_cidr(&a));
        let v6 = Cidr::parse("d", "::/0").unwrap();
        assert!(!v6.overlaps(&a));
    }
}
