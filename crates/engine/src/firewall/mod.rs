//! The nftables firewall of the bridge driver.
//!
//! Two layers, as DESIGN.md ("Kernel access") asks:
//!
//! * **Descriptions** ([`NetworkFirewall`], [`EndpointFirewall`]) turn into
//!   nft text and set elements without any I/O: [`NetworkFirewall::skeleton`]
//!   is the readable ruleset of one network's table `inet netloom-<id8>`,
//!   [`guard_skeleton`] that of the shared anti-spoofing table
//!   `bridge netloom-guard`, and [`EndpointFirewall::elements`] the facts of
//!   one endpoint (its MAC and addresses for the guard, its published ports
//!   for its network's DNAT maps).
//! * **The applier** ([`Firewall`]) applies skeletons with `nft -f` (once per
//!   network) and commits an endpoint's facts in-process over netlink as one
//!   transaction, so adding the 1000th endpoint costs what the 1st did.
//!
//! # What the rules do
//!
//! Per network (`table inet netloom-<id8>`):
//!
//! * **Masquerade**: traffic from the network's subnets leaving through any
//!   interface other than its bridge is masqueraded (IPv4 and IPv6), unless
//!   the network is internal or `masquerade` is off (a routed network).
//! * **NAT networks are not directly routable**: with masquerade on, a new
//!   connection from a non-netloom interface to a sandbox is dropped unless
//!   it was DNATed (a published port); replies to the sandboxes' own
//!   connections pass. A routed network (`masquerade: false`) accepts them.
//! * **Internal**: nothing is forwarded between the bridge and any other
//!   interface, in either direction; no masquerade, no published ports.
//! * **Isolation** (`isolate`): nothing is forwarded between the bridge and
//!   another netloom bridge (`nlbr-*`), in either direction. Two networks
//!   talk only when neither isolates. Published ports are the exception:
//!   a sandbox of another (non-internal) network may reach them through a
//!   host address, as it could from anywhere else.
//! * **Published ports**: DNAT of TCP, UDP and SCTP to a local address of
//!   the host (any, or one given host address), arriving from outside, from
//!   the host itself (output hook) or from a sandbox of the same network
//!   (hairpin: the DNATed connection is masqueraded back out the bridge so
//!   the replies return through the host).
//!   **Non-goal**: the host reaching a published port through a loopback
//!   address (`127.0.0.1`, `::1`). The output rules skip loopback
//!   destinations: DNAT would send a packet with a loopback source out the
//!   bridge, which only works with `route_localnet=1` (a known foot-gun) for
//!   IPv4 and not at all for IPv6; Docker needs its userland proxy for it.
//!   Publishing on a loopback host address is refused for the same reason.
//!
//! Shared (`table bridge netloom-guard`): a frame entering a bridge from a
//! netloom veth (`nlv-*`) must carry that port's MAC as Ethernet source;
//! ARP must name that MAC and the port's IPv4 address as sender (or
//! `0.0.0.0`: an RFC 5227 probe); IPv4 must come from the port's address;
//! IPv6 from the port's address, a link-local address (`fe80::/10`) or,
//! for neighbour and router solicitations and MLD reports only (DAD), from
//! `::`. Neighbour advertisements may only claim the port's own addresses
//! (or link-local ones); router advertisements, redirects and every other
//! EtherType (VLAN tags included) are dropped. A port with no facts yet
//! sends nothing: add the endpoint before its traffic is expected.
//!
//! # What the bridge driver must do around it
//!
//! * Turn on forwarding in the host namespace (`net.ipv4.ip_forward=1`,
//!   `net.ipv6.conf.all.forwarding=1`).
//! * Name bridges `nlbr-*` and host-side veths `nlv-*`, and give each
//!   sandbox `eth0` the MAC it passes here (set it explicitly at creation).
//! * Add an endpoint's facts before its sandbox is expected to talk (the
//!   guard drops everything from a port without facts), remove them after
//!   its veth is gone, and remove every endpoint before its network.
//! * Put each port in hairpin mode (`IFLA_BRPORT_MODE`). With bridge
//!   netfilter active (`br_netfilter` loaded: `bridge-nf-call-iptables=1`
//!   is its default, in every namespace), a DNAT whose target sits on the
//!   bridge the packet came from is not routed but sent back into the bridge
//!   as a bridged frame; a sandbox reaching its own published port then
//!   needs the bridge to send the frame back out of the port it came in by.
//!
//! # What the rules do not do
//!
//! * They cannot override another table's verdict: nftables drops a packet
//!   that any base chain drops. A host whose own firewall drops forwarded
//!   traffic must let netloom's bridges through.
//! * Traffic between sandboxes and the host itself (its own services, on the
//!   gateway address or any other) is not filtered, internal networks
//!   included.
//! * Link-local IPv6 sources are not tied to a port, so a sandbox can forge
//!   a neighbour's link-local address (but never its global ones or MAC).
//! * Conntrack entries are left alone: connections that exist when an
//!   endpoint's ports are removed keep flowing until they end.
//! * Two networks publishing the same host port do not clash in the kernel
//!   (each has its own maps); the engine must not hand out a host port
//!   twice. Within one network a clash is refused by the kernel.

mod apply;
mod elements;
mod error;
mod guard;
mod skeleton;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use apply::Firewall;
pub use elements::{port_maps, PORTS4, PORTS4_IP, PORTS6, PORTS6_IP};
pub use error::FirewallError;
pub use guard::{
    guard_sets, guard_skeleton, guard_table, GUARD_ADDRS4, GUARD_ADDRS6, GUARD_MACS, GUARD_TABLE,
    GUARD_TARGETS6,
};
pub use netloom_kernel::MacAddr;
pub use netloom_model::{Cidr, Family as IpFamily, PortMapping, Proto};

use netloom_kernel::nft::{Family, TableRef};

/// Every network table's name is this followed by the network's `id8`.
pub const NETWORK_TABLE_PREFIX: &str = "netloom-";
/// Names of netloom bridges start with this; isolation rules match it.
pub const BRIDGE_PREFIX: &str = "nlbr-";
/// Names of netloom veths (host side) start with this; the guard matches it.
pub const VETH_PREFIX: &str = "nlv-";
/// Longest interface name Linux accepts.
const MAX_IFNAME: usize = 15;

/// The firewall of one bridge network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFirewall {
    /// Short id (lowercase letters and digits): the table is `netloom-<id8>`.
    pub id8: String,
    /// The network's bridge; its name must start with [`BRIDGE_PREFIX`].
    pub bridge: String,
    /// The network's subnets (IPv4 and/or IPv6).
    pub subnets: Vec<Cidr>,
    /// Cut off from everything but its own bridge.
    pub internal: bool,
    /// No forwarding to or from other netloom bridges.
    pub isolate: bool,
    /// Masquerade traffic leaving through other interfaces (ignored when
    /// `internal`); off for a routed network.
    pub masquerade: bool,
}

impl NetworkFirewall {
    /// A NAT network that isolates itself: the usual bridge network.
    pub fn new(id8: impl Into<String>, bridge: impl Into<String>, subnets: Vec<Cidr>) -> Self {
        NetworkFirewall {
            id8: id8.into(),
            bridge: bridge.into(),
            subnets,
            internal: false,
            isolate: true,
            masquerade: true,
        }
    }

    /// The network's table name, `netloom-<id8>`.
    pub fn table_name(&self) -> String {
        table_name(&self.id8)
    }

    /// The network's table, `inet netloom-<id8>`.
    pub fn table(&self) -> TableRef {
        network_table(&self.id8)
    }

    /// The subnets of one family.
    pub fn subnets_of(&self, family: IpFamily) -> impl Iterator<Item = &Cidr> {
        self.subnets.iter().filter(move |c| c.family() == family)
    }

    /// Whether published ports exist on this network (not when internal).
    pub fn publishes_ports(&self) -> bool {
        !self.internal
    }

    /// `network 1a2b3c4d (bridge nlbr-1a2b3c4d)`, for messages.
    pub fn label(&self) -> String {
        format!("network {} (bridge {})", self.id8, self.bridge)
    }

    /// Checks the names and subnets: everything that goes into nft text.
    pub fn validate(&self) -> Result<(), FirewallError> {
        check_id8(&self.id8)?;
        let object = self.label();
        check_ifname(&object, "bridge", &self.bridge, BRIDGE_PREFIX)?;
        if self.subnets.is_empty() {
            return Err(FirewallError::invalid(
                object,
                "has no subnet",
                "give the network at least one IPv4 or IPv6 subnet",
            ));
        }
        Ok(())
    }
}

/// `netloom-<id8>`.
pub fn table_name(id8: &str) -> String {
    format!("{NETWORK_TABLE_PREFIX}{id8}")
}

/// The table of network `id8`: `inet netloom-<id8>`.
pub fn network_table(id8: &str) -> TableRef {
    TableRef::new(Family::Inet, table_name(id8))
}

/// The firewall facts of one endpoint: its host-side veth, MAC, addresses
/// and published ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointFirewall {
    /// The host side of its veth pair; starts with [`VETH_PREFIX`].
    pub veth: String,
    /// The MAC of the sandbox side (`eth0`), the only source it may use.
    pub mac: MacAddr,
    /// Whether frames must carry [`EndpointFirewall::mac`]; when false the
    /// port is in the guard's `anymac` set and only its addresses count.
    pub check_mac: bool,
    /// Its IPv4 address, inside one of the network's IPv4 subnets.
    pub ipv4: Option<Ipv4Addr>,
    /// Its IPv6 address, inside one of the network's IPv6 subnets.
    pub ipv6: Option<Ipv6Addr>,
    /// Its published ports, one mapping per port.
    pub ports: Vec<PortMapping>,
}

impl EndpointFirewall {
    /// `endpoint nlv-0a1b2c3d on network 1a2b3c4d`, for messages.
    pub fn label(&self, net: &NetworkFirewall) -> String {
        format!("endpoint {} on network {}", self.veth, net.id8)
    }

    /// Checks the endpoint against its network: names, MAC, addresses
    /// inside the subnets, and ports that can be published.
    pub fn validate(&self, net: &NetworkFirewall) -> Result<(), FirewallError> {
        let object = self.label(net);
        check_ifname(&object, "veth", &self.veth, VETH_PREFIX)?;
        let mac = self.mac.octets();
        if mac == [0; 6] || mac[0] & 1 == 1 {
            return Err(FirewallError::invalid(
                object,
                format!("MAC {} is not a unicast address", self.mac),
                "give the sandbox interface a unicast MAC (e.g. 02:xx:xx:xx:xx:xx)",
            ));
        }
        let addrs = [self.ipv4.map(IpAddr::V4), self.ipv6.map(IpAddr::V6)];
        for ip in addrs.into_iter().flatten() {
            if !net.subnets.iter().any(|c| c.contains(&ip)) {
                let subnets: Vec<String> = net.subnets.iter().map(Cidr::to_string).collect();
                return Err(FirewallError::invalid(
                    object,
                    format!(
                        "address {ip} is outside the network's subnets ({})",
                        subnets.join(", ")
                    ),
                    "allocate the endpoint's addresses from its network",
                ));
            }
        }
        for port in &self.ports {
            self.check_port(net, port)?;
        }
        Ok(())
    }

    fn check_port(&self, net: &NetworkFirewall, port: &PortMapping) -> Result<(), FirewallError> {
        let object = format!("{}, published port {port}", self.label(net));
        let refuse = |why: String, fix: &str| Err(FirewallError::invalid(&object, why, fix));
        if !net.publishes_ports() {
            return refuse(
                "the network is internal: nothing from outside may enter it".into(),
                "drop the published ports, or connect the sandbox to a non-internal network",
            );
        }
        if port.host_port == 0 || port.container_port == 0 {
            return refuse(
                "port 0 cannot be published".into(),
                "pick host and container ports from 1 to 65535",
            );
        }
        match port.host_ip.map(|ip| ip.to_canonical()) {
            Some(ip) if ip.is_loopback() => refuse(
                format!("host address {ip} is a loopback address"),
                "publish on a non-loopback host address or on all addresses; \
                 reaching published ports through loopback is not supported",
            ),
            Some(IpAddr::V4(_)) if self.ipv4.is_none() => refuse(
                "the host address is IPv4 but the endpoint has no IPv4 address".into(),
                "publish on an IPv6 host address, or give the endpoint an IPv4 address",
            ),
            Some(IpAddr::V6(_)) if self.ipv6.is_none() => refuse(
                "the host address is IPv6 but the endpoint has no IPv6 address".into(),
                "publish on an IPv4 host address, or give the endpoint an IPv6 address",
            ),
            None if self.ipv4.is_none() && self.ipv6.is_none() => refuse(
                "the endpoint has no address to forward to".into(),
                "give the endpoint an address before publishing ports",
            ),
            _ => Ok(()),
        }
    }
}

/// An `id8` must be a short run of lowercase letters and digits: it goes
/// into a table name.
fn check_id8(id8: &str) -> Result<(), FirewallError> {
    let ok = !id8.is_empty()
        && id8.len() <= 32
        && id8
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(FirewallError::invalid(
            format!("network {id8:?}"),
            "its short id must be 1 to 32 lowercase letters or digits",
            "pass the first 8 hex digits of the network id",
        ))
    }
}

/// An interface name netloom writes into rules: `prefix` then letters,
/// digits, `-` or `_`, at most 15 bytes.
fn check_ifname(object: &str, what: &str, name: &str, prefix: &str) -> Result<(), FirewallError> {
    let charset = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name.starts_with(prefix) || name.len() > MAX_IFNAME || !charset {
        return Err(FirewallError::invalid(
            object,
            format!("{what} name {name:?} is not a netloom {what} name"),
            format!(
                "name it {prefix}<id> (letters, digits, '-' or '_', at most {MAX_IFNAME} bytes): \
                 the firewall recognises netloom {what}s by the {prefix:?} prefix"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_data {
    use super::*;

    pub fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    pub fn net() -> NetworkFirewall {
        NetworkFirewall::new(
            "1a2b3c4d",
            "nlbr-1a2b3c4d",
            vec![cidr("10.88.0.0/24"), cidr("fd00:88::/64")],
        )
    }

    pub fn endpoint() -> EndpointFirewall {
        EndpointFirewall {
            veth: "nlv-0a0b0c0d".into(),
            mac: "02:42:0a:58:00:02".parse().unwrap(),
            check_mac: true,
            ipv4: Some("10.88.0.2".parse().unwrap()),
            ipv6: Some("fd00:88::2".parse().unwrap()),
            ports: vec![
                PortMapping {
                    host_ip: None,
                    host_port: 8080,
                    container_port: 80,
                    proto: Proto::Tcp,
                },
                PortMapping {
                    host_ip: Some("192.0.2.1".parse().unwrap()),
                    host_port: 5353,
                    container_port: 53,
                    proto: Proto::Udp,
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_data::*;
    use super::*;

    fn err_of(r: Result<(), FirewallError>) -> String {
        r.expect_err("must be refused").to_string()
    }

    #[test]
    fn a_valid_network_and_endpoint_pass() {
        net().validate().unwrap();
        endpoint().validate(&net()).unwrap();
        assert_eq!(net().table().to_string(), "nft table inet netloom-1a2b3c4d");
    }

    #[test]
    fn names_that_would_break_nft_text_are_refused() {
        let mut n = net();
        n.id8 = "1A-2b".into();
        assert!(err_of(n.validate()).contains("short id"));
        let mut n = net();
        n.bridge = "br0".into();
        let e = err_of(n.validate());
        assert!(e.contains("\"br0\"") && e.contains("nlbr-"), "{e}");
        n.bridge = "nlbr-\"; drop".into();
        assert!(n.validate().is_err());
        n.bridge = "nlbr-0123456789ab".into();
        assert!(n.validate().is_err(), "16 bytes is too long");
        let mut n = net();
        n.subnets.clear();
        assert!(err_of(n.validate()).contains("no subnet"));
        let mut ep = endpoint();
        ep.veth = "veth0".into();
        assert!(err_of(ep.validate(&net())).contains("nlv-"));
    }

    #[test]
    fn endpoints_must_fit_their_network() {
        let mut ep = endpoint();
        ep.ipv4 = Some("10.99.0.2".parse().unwrap());
        let e = err_of(ep.validate(&net()));
        assert!(e.contains("10.99.0.2 is outside"), "{e}");
        assert!(
            e.starts_with("endpoint nlv-0a0b0c0d on network 1a2b3c4d"),
            "{e}"
        );
        let mut ep = endpoint();
        ep.mac = "01:00:5e:00:00:01".parse().unwrap();
        assert!(err_of(ep.validate(&net())).contains("not a unicast"));
    }

    #[test]
    fn ports_that_cannot_work_are_refused() {
        let mut n = net();
        n.internal = true;
        let e = err_of(endpoint().validate(&n));
        assert!(e.contains("internal"), "{e}");
        let mut ep = endpoint();
        ep.ports[0].host_ip = Some("127.0.0.1".parse().unwrap());
        assert!(err_of(ep.validate(&net())).contains("loopback"));
        let mut ep = endpoint();
        ep.ipv4 = None;
        let e = err_of(ep.validate(&net()));
        assert!(e.contains("no IPv4 address"), "{e}");
        let mut ep = endpoint();
        ep.ports[0].host_port = 0;
        assert!(err_of(ep.validate(&net())).contains("port 0"));
        let mut ep = endpoint();
        ep.ipv4 = None;
        ep.ipv6 = None;
        ep.ports.truncate(1);
        assert!(err_of(ep.validate(&net())).contains("no address"));
    }
}
