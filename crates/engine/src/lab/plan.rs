//! The lab address plan (seed 001), every range movable.
//!
//! With the default base 172.18.0.0/16:
//!
//! | what | IPv4 | IPv6 (ULA /48 `P`) |
//! |---|---|---|
//! | host ↔ gateway | 172.18.255.0/30: host .1, gateway .2 | `P:ffff::/64`: host ::1, gateway ::2 |
//! | gateway ↔ lab bridge | one /30 per lab from 172.18.192.0/19: gateway +1, bridge +2 | `P:c000+slot::/64`: ::1, ::2 |
//! | bridge ↔ nodes | 172.18.0.0/24 (up to a /17), bridge 172.18.0.254 | `P::/64`, node = `P::` + its IPv4 offset |
//!
//! Only the host address appears in the host namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netloom_model::{Cidr, ModelError};
use serde::{Deserialize, Serialize};

/// What may be set; anything left out follows `base` (or the default base).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanSettings {
    /// An IPv4 /16 that moves the whole IPv4 plan (and the default ULA).
    pub base: Option<String>,
    /// The host ↔ gateway /30.
    pub host: Option<String>,
    /// The range the per-lab /30s come from.
    pub labs: Option<String>,
    /// The node subnet of every lab (a /24 by default, at most a /16).
    pub nodes: Option<String>,
    /// The bridge's address in the node subnet.
    pub bridge: Option<String>,
    /// The IPv6 ULA /48.
    pub ula: Option<String>,
}

impl PlanSettings {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == PlanSettings::default()
    }
}

/// The default base.
pub const DEFAULT_BASE: &str = "172.18.0.0/16";

/// A resolved, validated plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPlan {
    pub host_link: Cidr,
    pub lab_links: Cidr,
    pub nodes: Cidr,
    pub bridge: Ipv4Addr,
    pub ula: Cidr,
}

fn v4(c: &Cidr) -> Ipv4Addr {
    match c.addr() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

fn add4(a: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a).wrapping_add(n))
}

fn invalid(setting: &str, value: &str, why: String) -> ModelError {
    ModelError::Invalid {
        object: format!("lab plan setting {setting} {value:?}"),
        why,
        fix: "see `netloom lab up --help` for the plan settings and their defaults".into(),
    }
}

fn parse_v4(
    setting: &str,
    text: &str,
    prefix: std::ops::RangeInclusive<u8>,
) -> Result<Cidr, ModelError> {
    let c = Cidr::parse(setting, text)?;
    if c.family() != netloom_model::Family::V4 || !prefix.contains(&c.prefix()) {
        return Err(invalid(
            setting,
            text,
            format!(
                "want an IPv4 prefix /{} to /{}",
                prefix.start(),
                prefix.end()
            ),
        ));
    }
    Ok(c)
}

impl LabPlan {
    /// Resolves settings into a plan and checks it.
    pub fn resolve(s: &PlanSettings) -> Result<LabPlan, ModelError> {
        let base_text = s.base.as_deref().unwrap_or(DEFAULT_BASE);
        let base = parse_v4("--lab-base", base_text, 16..=16)?;
        let b = v4(&base);
        let o = b.octets();
        let cidr =
            |a: Ipv4Addr, p: u8| Cidr::new(IpAddr::V4(a), p).expect("aligned by construction");
        let host_link = match &s.host {
            Some(t) => parse_v4("--lab-host-net", t, 30..=30)?,
            None => cidr(add4(b, 0xff00), 30),
        };
        let lab_links = match &s.labs {
            Some(t) => parse_v4("--lab-links", t, 16..=30)?,
            None => cidr(add4(b, 0xc000), 19),
        };
        let nodes = match &s.nodes {
            Some(t) => parse_v4("--lab-nodes", t, 16..=30)?,
            None => cidr(b, 24),
        };
        let bridge = match &s.bridge {
            Some(t) => t
                .parse::<Ipv4Addr>()
                .map_err(|_| invalid("--lab-bridge", t, "not an IPv4 address".into()))?,
            // .254 of the first /24, as in seed 001 (also when the node
            // subnet grows to a /17); the last host address of a smaller one.
            None if nodes.prefix() <= 24 => add4(v4(&nodes), 254),
            None => add4(v4(&nodes), nodes.size() as u32 - 2),
        };
        let ula = match &s.ula {
            Some(t) => {
                let c = Cidr::parse("--lab-ula", t)?;
                if c.family() != netloom_model::Family::V6 || c.prefix() > 48 {
                    return Err(invalid(
                        "--lab-ula",
                        t,
                        "want an IPv6 prefix of /48 or shorter, e.g. fd6e:6cac:1200::/48".into(),
                    ));
                }
                Cidr::new(c.addr(), 48).map_err(|e| invalid("--lab-ula", t, e.to_string()))?
            }
            None => {
                let seg = |hi: u8, lo: u8| (u16::from(hi) << 8) | u16::from(lo);
                let a = Ipv6Addr::new(0xfd6e, seg(0x6c, o[0]), seg(o[1], 0), 0, 0, 0, 0, 0);
                Cidr::new(IpAddr::V6(a), 48).expect("aligned")
            }
        };
        let plan = LabPlan {
            host_link,
            lab_links,
            nodes,
            bridge,
            ula,
        };
        plan.check()?;
        Ok(plan)
    }

    fn check(&self) -> Result<(), ModelError> {
        let named = [
            ("--lab-host-net", &self.host_link),
            ("--lab-links", &self.lab_links),
            ("--lab-nodes", &self.nodes),
        ];
        for (i, (na, a)) in named.iter().enumerate() {
            for (nb, b) in &named[i + 1..] {
                if a.overlaps(b) {
                    return Err(invalid(
                        na,
                        &a.to_string(),
                        format!("it overlaps {nb} {b}; the three ranges must be disjoint"),
                    ));
                }
            }
        }
        let bridge = IpAddr::V4(self.bridge);
        if !self.nodes.contains(&bridge) || self.nodes.reserved_role(&bridge).is_some() {
            return Err(invalid(
                "--lab-bridge",
                &self.bridge.to_string(),
                format!(
                    "it must be a host address of the node subnet {}",
                    self.nodes
                ),
            ));
        }
        if self.nodes.prefix() < 16 {
            return Err(invalid(
                "--lab-nodes",
                &self.nodes.to_string(),
                "at most a /16".into(),
            ));
        }
        Ok(())
    }

    /// How many labs may exist at once (/30s in the lab range).
    pub fn slots(&self) -> u32 {
        (1u32 << (30 - self.lab_links.prefix())).min(0x4000)
    }

    /// The host's address on the host ↔ gateway link.
    pub fn host_v4(&self) -> Ipv4Addr {
        add4(v4(&self.host_link), 1)
    }

    /// The gateway's address on the host ↔ gateway link.
    pub fn gateway_v4(&self) -> Ipv4Addr {
        add4(v4(&self.host_link), 2)
    }

    fn ula_net(&self, subnet: u16) -> u128 {
        crate::model::addr::to_u128(self.ula.addr()) | (u128::from(subnet) << 64)
    }

    fn v6(n: u128) -> Ipv6Addr {
        Ipv6Addr::from(n)
    }

    pub fn host_v6(&self) -> Ipv6Addr {
        Self::v6(self.ula_net(0xffff) | 1)
    }

    pub fn gateway_v6(&self) -> Ipv6Addr {
        Self::v6(self.ula_net(0xffff) | 2)
    }

    /// Gateway-side and bridge-side IPv4 addresses of a lab's /30.
    pub fn link_v4(&self, slot: u32) -> (Ipv4Addr, Ipv4Addr) {
        let net = add4(v4(&self.lab_links), slot * 4);
        (add4(net, 1), add4(net, 2))
    }

    /// Gateway-side and bridge-side IPv6 addresses of a lab's link (/64).
    pub fn link_v6(&self, slot: u32) -> (Ipv6Addr, Ipv6Addr) {
        let net = self.ula_net(0xc000 + slot as u16);
        (Self::v6(net | 1), Self::v6(net | 2))
    }

    /// A node's (or the bridge's) IPv6 address: the node /64 of the ULA
    /// plus the IPv4 address's offset in the node subnet.
    pub fn node_v6(&self, ipv4: Ipv4Addr) -> Ipv6Addr {
        let offset = u32::from(ipv4).wrapping_sub(u32::from(v4(&self.nodes)));
        Self::v6(self.ula_net(0) | u128::from(offset))
    }

    pub fn bridge_v6(&self) -> Ipv6Addr {
        self.node_v6(self.bridge)
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "host {}/30, labs {} ({} at once), nodes {} with the bridge at {}, IPv6 {}",
            self.host_v4(),
            self.lab_links,
            self.slots(),
            self.nodes,
            self.bridge,
            self.ula
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_is_seed_001s() {
        let p = LabPlan::resolve(&PlanSettings::default()).unwrap();
        assert_eq!(p.host_v4().to_string(), "172.18.255.1");
        assert_eq!(p.gateway_v4().to_string(), "172.18.255.2");
        assert_eq!(p.lab_links.to_string(), "172.18.192.0/19");
        assert_eq!(p.slots(), 2048);
        assert_eq!(
            p.link_v4(0),
            (
                "172.18.192.1".parse().unwrap(),
                "172.18.192.2".parse().unwrap()
            )
        );
        assert_eq!(p.link_v4(2047).1.to_string(), "172.18.223.254");
        assert_eq!(p.nodes.to_string(), "172.18.0.0/24");
        assert_eq!(p.bridge.to_string(), "172.18.0.254");
        assert_eq!(p.ula.to_string(), "fd6e:6cac:1200::/48");
        assert_eq!(
            p.node_v6("172.18.0.5".parse().unwrap()).to_string(),
            "fd6e:6cac:1200::5"
        );
        assert_eq!(p.link_v6(3).1.to_string(), "fd6e:6cac:1200:c003::2");
        assert_eq!(p.host_v6().to_string(), "fd6e:6cac:1200:ffff::1");
    }

    #[test]
    fn one_setting_moves_everything() {
        let p = LabPlan::resolve(&PlanSettings {
            base: Some("10.77.0.0/16".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.host_v4().to_string(), "10.77.255.1");
        assert_eq!(p.lab_links.to_string(), "10.77.192.0/19");
        assert_eq!(p.bridge.to_string(), "10.77.0.254");
        assert_eq!(p.ula.to_string(), "fd6e:6c0a:4d00::/48");
        let wide = LabPlan::resolve(&PlanSettings {
            nodes: Some("172.18.0.0/17".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(wide.bridge.to_string(), "172.18.0.254");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let err = |s: PlanSettings| LabPlan::resolve(&s).unwrap_err().to_string();
        let e = err(PlanSettings {
            base: Some("10.0.0.0/8".into()),
            ..Default::default()
        });
        assert!(e.contains("--lab-base") && e.contains("/16"), "{e}");
        let e = err(PlanSettings {
            nodes: Some("172.18.192.0/24".into()),
            ..Default::default()
        });
        assert!(e.contains("overlaps"), "{e}");
        let e = err(PlanSettings {
            bridge: Some("172.18.1.1".into()),
            ..Default::default()
        });
        assert!(e.contains("--lab-bridge"), "{e}");
    }
}
