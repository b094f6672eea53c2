//! An endpoint's facts as set and map elements: its MAC and addresses in
//! the guard, its published ports in its network's DNAT maps.

use std::net::IpAddr;

use netloom_kernel::nft::{Batch, Element, Family, SetRef, Value};

use super::guard::{
    GUARD_ADDRS4, GUARD_ADDRS6, GUARD_ANYMAC, GUARD_MACS, GUARD_TABLE, GUARD_TARGETS6,
};
use super::{EndpointFirewall, FirewallError, NetworkFirewall, PortMapping};

/// Map `inet_proto . inet_service : ipv4_addr . inet_service`: ports
/// published on every IPv4 address of the host.
pub const PORTS4: &str = "ports4";
/// Map `ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service`:
/// ports published on one IPv4 address of the host.
pub const PORTS4_IP: &str = "ports4_ip";
/// Map `inet_proto . inet_service : ipv6_addr . inet_service`.
pub const PORTS6: &str = "ports6";
/// Map `ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service`.
pub const PORTS6_IP: &str = "ports6_ip";

/// A network's DNAT maps, in the order [`PORTS4`], [`PORTS4_IP`],
/// [`PORTS6`], [`PORTS6_IP`].
pub fn port_maps(id8: &str) -> [SetRef; 4] {
    let table = super::table_name(id8);
    [PORTS4, PORTS4_IP, PORTS6, PORTS6_IP].map(|m| SetRef::new(Family::Inet, table.clone(), m))
}

impl EndpointFirewall {
    /// Every element this endpoint needs, with the set or map it goes in:
    /// guard facts first, then published ports. Checks the endpoint first
    /// ([`EndpointFirewall::validate`]), and refuses two mappings that
    /// claim one host port with different targets.
    pub fn elements(&self, net: &NetworkFirewall) -> Result<Vec<(SetRef, Element)>, FirewallError> {
        self.validate(net)?;
        self.facts(net, true)
    }

    /// The elements, unchecked. With `strict`, two mappings of one host
    /// port to different targets are an error; otherwise the first wins.
    pub(crate) fn facts(
        &self,
        net: &NetworkFirewall,
        strict: bool,
    ) -> Result<Vec<(SetRef, Element)>, FirewallError> {
        let guard = |name: &str| SetRef::new(Family::Bridge, GUARD_TABLE, name);
        let port = || Value::Ifname(self.veth.clone());
        let mut out = vec![if self.check_mac {
            (
                guard(GUARD_MACS),
                Element::concat([port(), Value::EtherAddr(self.mac.octets())]),
            )
        } else {
            (guard(GUARD_ANYMAC), Element::concat([port()]))
        }];
        if let Some(ip) = self.ipv4 {
            out.push((guard(GUARD_ADDRS4), Element::concat([port(), ip.into()])));
        }
        if let Some(ip) = self.ipv6 {
            out.push((guard(GUARD_ADDRS6), Element::concat([port(), ip.into()])));
            out.push((guard(GUARD_TARGETS6), Element::concat([port(), ip.into()])));
        }
        let mut ports: Vec<(SetRef, Element, &PortMapping)> = Vec::new();
        for mapping in &self.ports {
            for (set, element) in self.port_elements(net, mapping) {
                let same_key = ports
                    .iter()
                    .find(|(s, e, _)| *s == set && e.key == element.key);
                match same_key {
                    Some((_, e, _)) if e.data == element.data || !strict => {}
                    Some((_, _, other)) => {
                        return Err(FirewallError::invalid(
                            self.label(net),
                            format!(
                                "published ports {other} and {mapping} claim the same host port"
                            ),
                            "publish each host port once",
                        ))
                    }
                    None => ports.push((set, element, mapping)),
                }
            }
        }
        out.extend(ports.into_iter().map(|(s, e, _)| (s, e)));
        Ok(out)
    }

    /// The map elements of one published port: one per family the endpoint
    /// has when no host address is given; `0.0.0.0` and `::` mean every
    /// address of their family.
    fn port_elements(&self, net: &NetworkFirewall, m: &PortMapping) -> Vec<(SetRef, Element)> {
        let [p4, p4_ip, p6, p6_ip] = port_maps(&net.id8);
        let proto = Value::InetProto(m.proto.number());
        let host_port = Value::InetService(m.host_port);
        let target = |ip: IpAddr| [ip.into(), Value::InetService(m.container_port)];
        let any = |set: &SetRef, ip: IpAddr| {
            let key = [proto.clone(), host_port.clone()];
            (set.clone(), Element::concat(key).with_data(target(ip)))
        };
        let one = |set: &SetRef, host: IpAddr, ip: IpAddr| {
            let key = [host.into(), proto.clone(), host_port.clone()];
            (set.clone(), Element::concat(key).with_data(target(ip)))
        };
        let v4 = self.ipv4.map(IpAddr::V4);
        let v6 = self.ipv6.map(IpAddr::V6);
        match m.host_ip.map(|ip| ip.to_canonical()) {
            None => [v4.map(|ip| any(&p4, ip)), v6.map(|ip| any(&p6, ip))]
                .into_iter()
                .flatten()
                .collect(),
            Some(host @ IpAddr::V4(h)) => v4
                .map(|ip| {
                    if h.is_unspecified() {
                        any(&p4, ip)
                    } else {
                        one(&p4_ip, host, ip)
                    }
                })
                .into_iter()
                .collect(),
            Some(host @ IpAddr::V6(h)) => v6
                .map(|ip| {
                    if h.is_unspecified() {
                        any(&p6, ip)
                    } else {
                        one(&p6_ip, host, ip)
                    }
                })
                .into_iter()
                .collect(),
        }
    }

    /// One transaction adding every element (already present ones are
    /// fine; a host port published with another target is refused by the
    /// kernel with `EEXIST`, and then nothing is added).
    pub fn add_batch(&self, net: &NetworkFirewall) -> Result<Batch, FirewallError> {
        Ok(batch_of(self.elements(net)?, false))
    }

    /// One transaction removing every element; absent ones are fine
    /// (`destroy`, Linux 6.3+). Map elements are removed by key: a host
    /// port is removed whatever it maps to, so callers must only remove
    /// ports the endpoint still owns. Not validated, so that whatever was
    /// added can always be removed.
    pub fn remove_batch(&self, net: &NetworkFirewall) -> Result<Batch, FirewallError> {
        Ok(batch_of(self.facts(net, false)?, true))
    }
}

/// Groups elements into one operation per set, in first-seen order.
/// Removal keeps keys only: the kernel finds elements by key.
pub(crate) fn batch_of(elements: Vec<(SetRef, Element)>, remove: bool) -> Batch {
    let mut grouped: Vec<(SetRef, Vec<Element>)> = Vec::new();
    for (set, mut element) in elements {
        if remove {
            element.data = None;
        }
        match grouped.iter_mut().find(|(s, _)| *s == set) {
            Some((_, list)) => list.push(element),
            None => grouped.push((set, vec![element])),
        }
    }
    let mut batch = Batch::new();
    for (set, list) in grouped {
        if remove {
            batch.destroy(&set, list);
        } else {
            batch.add(&set, list);
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::super::test_data::*;
    use super::super::Proto;
    use super::*;
    use netloom_kernel::nft::{BatchOp, ElementOp};

    fn shown(elements: &[(SetRef, Element)]) -> Vec<String> {
        elements
            .iter()
            .map(|(s, e)| format!("{}: {e}", s.set))
            .collect()
    }

    #[test]
    fn an_endpoint_becomes_guard_facts_and_port_map_entries() {
        let got = shown(&endpoint().elements(&net()).unwrap());
        assert_eq!(
            got,
            [
                "macs: \"nlv-0a0b0c0d\" . 02:42:0a:58:00:02",
                "addrs4: \"nlv-0a0b0c0d\" . 10.88.0.2",
                "addrs6: \"nlv-0a0b0c0d\" . fd00:88::2",
                "targets6: \"nlv-0a0b0c0d\" . fd00:88::2",
                "ports4: tcp . 8080 : 10.88.0.2 . 80",
                "ports6: tcp . 8080 : fd00:88::2 . 80",
                "ports4_ip: 192.0.2.1 . udp . 5353 : 10.88.0.2 . 53",
            ]
        );
    }

    #[test]
    fn unspecified_host_addresses_mean_every_address_of_one_family() {
        let mut ep = endpoint();
        ep.ports = vec![
            PortMapping {
                host_ip: Some("::".parse().unwrap()),
                host_port: 9000,
                container_port: 9,
                proto: Proto::Sctp,
            },
            PortMapping {
                host_ip: Some("::ffff:192.0.2.7".parse().unwrap()),
                host_port: 9001,
                container_port: 9,
                proto: Proto::Tcp,
            },
        ];
        let got = shown(&ep.elements(&net()).unwrap());
        assert_eq!(
            got[4..],
            [
                "ports6: sctp . 9000 : fd00:88::2 . 9",
                "ports4_ip: 192.0.2.7 . tcp . 9001 : 10.88.0.2 . 9",
            ]
        );
    }

    #[test]
    fn one_host_port_with_two_targets_is_refused_and_duplicates_merge() {
        let mut ep = endpoint();
        let mut twin = ep.ports[0];
        ep.ports.push(twin);
        assert_eq!(
            ep.elements(&net()).unwrap().len(),
            7,
            "exact duplicate merges"
        );
        twin.container_port = 81;
        ep.ports.push(twin);
        let err = ep.elements(&net()).unwrap_err().to_string();
        assert!(
            err.contains("8080:80/tcp and 8080:81/tcp claim the same host port"),
            "{err}"
        );
    }

    #[test]
    fn batches_group_by_set_and_removal_uses_keys_only() {
        let add = endpoint().add_batch(&net()).unwrap();
        assert_eq!(add.ops().len(), 7);
        let remove = endpoint().remove_batch(&net()).unwrap();
        for op in remove.ops() {
            let BatchOp::Elements { op, elements, .. } = op else {
                panic!("unexpected {op:?}")
            };
            assert_eq!(*op, ElementOp::Destroy);
            assert!(elements.iter().all(|e| e.data.is_none()));
        }
        let mut ep = endpoint();
        ep.ports.clear();
        ep.ipv6 = None;
        let b = ep.add_batch(&net()).unwrap();
        let sets: Vec<&str> = b
            .ops()
            .iter()
            .map(|op| match op {
                BatchOp::Elements { set, .. } => set.set.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(sets, ["macs", "addrs4"]);
    }
}
