//! One lab in the kernel: its bridge namespace (linked to the gateway by a
//! /30) and a namespace per node on the bridge.
//!
//! Per node: one named namespace, one `RTM_NEWLINK` that makes the veth
//! with its bridge port enslaved and its peer created directly in the
//! node's namespace, then a handful of messages on one socket inside the
//! node (loopback, eth0, addresses, default routes) and one bringing the
//! port up. The lab's NAT
//! rules are one nf_tables transaction over netlink. No process is spawned.
//!
//! Teardown removes the namespaces: the kernel frees their veths with them.
//!
//! The order links come up in matters. A link that is up without a carrier
//! (a veth whose other end is down, a bridge without a port up) gets its
//! queues deactivated when the kernel next handles link events, and that
//! waits for an RCU grace period while holding the RTNL lock, stalling
//! every netlink request on the machine (looking a link up handles its
//! pending events at once). So each veth end comes up right after its
//! other end, links are looked up while down or once their other end is
//! up, and a lab's bridge comes up after its ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netloom_kernel::lab_support::{create_named_with_socket_here, create_named_with_sockets};
use netloom_kernel::nft::{
    Batch, ChainDef, ChainType, Element, Family, Hook, Rule, TableDef, Value,
};
use netloom_kernel::{
    AddressOptions, IpPrefix, LinkSpec, MacAddr, Netlink, Netns, Route, RETIRED_LINK_PREFIX,
};

use super::gateway::{self, lab_link};
use super::plan::LabPlan;
use super::{
    bridge_netns_name, fw_err, kerr, node_netns_name, node_port, NodeRecord, BRIDGE, BRIDGE_UPLINK,
    NODE_IF,
};
use crate::EngineError;

/// A published port as the bridge namespace maps it.
pub struct NodePort {
    pub proto: &'static str,
    pub host_port: u16,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub port: u16,
}

/// The lab's NAT rules in its bridge namespace: published ports coming
/// from the gateway are translated to their node (IPv4 and IPv6), and
/// what leaves for the gateway is masqueraded. As nft text:
///
/// ```text
/// table inet netloom-lab {
///     map ports4 { type inet_proto . inet_service : ipv4_addr . inet_service; elements = { ... } }
///     map ports6 { type inet_proto . inet_service : ipv6_addr . inet_service; elements = { ... } }
///     chain prerouting {
///         type nat hook prerouting priority dstnat; policy accept;
///         iifname "up0" meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
///         iifname "up0" meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6
///     }
///     chain postrouting {
///         type nat hook postrouting priority srcnat; policy accept;
///         oifname "up0" masquerade
///     }
/// }
/// ```
fn bridge_table(ports: &[NodePort]) -> TableDef {
    let port_key = |p: &NodePort| {
        Element::concat([
            Value::InetProto(gateway::proto_number(p.proto)),
            Value::InetService(p.host_port),
        ])
    };
    let to4 = ports
        .iter()
        .map(|p| port_key(p).with_data([Value::Ipv4Addr(p.ipv4), Value::InetService(p.port)]));
    let to6 = ports
        .iter()
        .map(|p| port_key(p).with_data([Value::Ipv6Addr(p.ipv6), Value::InetService(p.port)]));
    gateway::forwarding_table(BRIDGE_UPLINK, true, to4, to6)
}

/// ICMPv6 type of an MLDv2 listener report.
const MLD2_LISTENER_REPORT: u8 = 143;

/// `filter` priority in the `bridge` family.
const BRIDGE_PRIORITY_FILTER: i32 = -200;

/// The lab's bridge-family table: drops multicast listener reports on the
/// lab's bridge, those of nodes and of the bridge itself.
///
/// ```text
/// table bridge netloom-lab {
///     chain prerouting {
///         type filter hook prerouting priority filter; policy accept;
///         icmpv6 type mld2-listener-report drop
///     }
///     chain output {
///         type filter hook output priority filter; policy accept;
///         icmpv6 type mld2-listener-report drop
///     }
/// }
/// ```
///
/// Every IPv6 address a node or the bridge gets makes it report its new
/// group (twice). The nodes have no link-local addresses, so their reports
/// come from `::`, the bridge's snooping does not take them, and each was
/// flooded to every other node: work that grew with the square of the
/// lab's size (in a 500-node lab, more than a third of the CPU time of
/// bringing it up). Nothing in a lab needs them: with no report taken, the
/// bridge floods multicast (neighbour discovery included) to every node,
/// as it did. Queries (none are sent in a lab) would still pass.
fn quiet_bridge_table() -> TableDef {
    let drop_reports = |chain: &str| Rule::new(chain).icmpv6_type(MLD2_LISTENER_REPORT).drop();
    TableDef::new(Family::Bridge, gateway::LAB_TABLE)
        .chain(ChainDef::new(
            "prerouting",
            ChainType::Filter,
            Hook::Prerouting,
            BRIDGE_PRIORITY_FILTER,
        ))
        .chain(ChainDef::new(
            "output",
            ChainType::Filter,
            Hook::Output,
            BRIDGE_PRIORITY_FILTER,
        ))
        .rule(drop_reports("prerouting"))
        .rule(drop_reports("output"))
}

fn prefixes(v4: Ipv4Addr, len4: u8, v6: Ipv6Addr, len6: u8) -> [IpPrefix; 2] {
    [
        IpPrefix::new(IpAddr::V4(v4), len4).expect("valid length"),
        IpPrefix::new(IpAddr::V6(v6), len6).expect("valid length"),
    ]
}

/// Brings `link`, the far end of a /30 link (host ↔ gateway, gateway ↔
/// lab bridge), up in `nl`'s namespace and gives it `v4`/30 and `v6`/64.
pub(super) fn set_up_veth_end(
    nl: &mut Netlink,
    what: &str,
    link: &str,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
) -> Result<(), EngineError> {
    let index = nl
        .link_index(link)
        .map_err(kerr(format!("{what}: find {link}")))?;
    nl.set_up(index, true)
        .map_err(kerr(format!("{what}: bring {link} up")))?;
    for p in prefixes(v4, 30, v6, 64) {
        nl.add_address(index, p, AddressOptions::nodad())
            .map_err(kerr(format!("{what}: add {p} to {link}")))?;
    }
    Ok(())
}

/// The MAC of every lab's `br0` (locally administered; labs never share a
/// link, so one value serves them all).
const BRIDGE_MAC: MacAddr = MacAddr([0x0a, 0x6e, 0x6c, 0x62, 0x72, 0x30]);

/// A lab's bridge namespace as [`make_bridge`] leaves it: a socket in
/// it, and the bridge's index.
pub struct Bridge {
    pub nl: Netlink,
    pub index: u32,
}

/// Makes a lab's bridge namespace, its NAT rules and its link to the
/// gateway.
pub fn make_bridge(
    gw: &Netns,
    plan: &LabPlan,
    lab: &str,
    slot: u32,
    ports: &[NodePort],
) -> Result<Bridge, EngineError> {
    let what = format!("lab {lab:?}");
    let name = bridge_netns_name(lab);
    let made = create_named_with_sockets(
        &name,
        &[
            // Forwarding on the links made here from now on (up0, br0):
            // unlike `ip_forward`, writing the default takes no RTNL lock,
            // which many labs coming up at once contend for.
            ("net.ipv4.conf.default.forwarding", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            // Bridge ports need no IPv6 link-local addresses of their own.
            ("net.ipv6.conf.default.addr_gen_mode", "1"),
        ],
        gw,
    )
    .map_err(kerr(format!("{what}: create netns {name}")))?;
    let (ns, mut nl, mut gwnl) = (made.ns, made.nl, made.neighbour);
    let rules = format!("{what}: NAT rules in {name}");
    made.nft
        .and_then(|mut nft| {
            nft.commit(
                Batch::new()
                    .add_table(bridge_table(ports))
                    .add_table(quiet_bridge_table()),
            )
        })
        .map_err(fw_err(&rules))?;
    let link = lab_link(slot);
    // The link of the slot's previous lab may still be waiting for the
    // kernel to reap it with that lab's namespace.
    super::retire_if_present(&mut gwnl, &link, &what)?;
    gwnl.create_veth(
        &LinkSpec::new(&link).up(),
        &LinkSpec::new(BRIDGE_UPLINK).netns(&ns),
    )
    .map_err(kerr(format!("{what}: create veth {link} in the gateway")))?;
    let (gw4, br4) = plan.link_v4(slot);
    let (gw6, br6) = plan.link_v6(slot);
    // The bridge's end up first, so the gateway's end has its carrier by
    // the time it is looked up (see the module docs).
    set_up_veth_end(&mut nl, &what, BRIDGE_UPLINK, br4, br6)?;
    let gwidx = gwnl
        .link_index(&link)
        .map_err(kerr(format!("{what}: find {link}")))?;
    for p in prefixes(gw4, 30, gw6, 64) {
        gwnl.add_address(gwidx, p, AddressOptions::nodad())
            .map_err(kerr(format!("{what}: add {p} to {link} in the gateway")))?;
    }
    for via in [IpAddr::V4(gw4), IpAddr::V6(gw6)] {
        nl.add_route(&Route::default_via(via))
            .map_err(kerr(format!("{what}: add default route via {via}")))?;
    }
    // A MAC of its own, or it would take the lowest of its ports' and
    // change as nodes are added (each change is announced to every node).
    // Brought up by `make_nodes` once its ports are: up without one, it
    // would have no carrier (see the module docs).
    nl.create_bridge(&LinkSpec::new(BRIDGE).mac(BRIDGE_MAC))
        .map_err(kerr(format!("{what}: create bridge {BRIDGE}")))?;
    let br = nl
        .link_index(BRIDGE)
        .map_err(kerr(format!("{what}: find {BRIDGE}")))?;
    for p in prefixes(plan.bridge, plan.nodes.prefix(), plan.bridge_v6(), 64) {
        nl.add_address(br, p, AddressOptions::nodad())
            .map_err(kerr(format!("{what}: add {p} to {BRIDGE}")))?;
    }
    Ok(Bridge { nl, index: br })
}

/// How many namespaces are made at once. Making a network namespace is
/// the kernel's slowest step here and runs in parallel; the veths and
/// addresses follow on the caller's thread as namespaces arrive.
const PARALLEL_NAMESPACES: usize = 4;

/// Makes every node: its namespace, its veth on the bridge, addresses and
/// routes. Stops at the first failure (the caller removes what was made).
pub fn make_nodes(
    bridge: &mut Netlink,
    br_index: u32,
    plan: &LabPlan,
    lab: &str,
    nodes: &[NodeRecord],
) -> Result<(), EngineError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..PARALLEL_NAMESPACES.min(nodes.len()) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= nodes.len() || stop.load(Ordering::Relaxed) {
                    return;
                }
                let name = node_netns_name(lab, &nodes[i].name);
                // This thread is made for this loop and exits after it, so
                // it may make each namespace itself (and stay in the last).
                let made = create_named_with_socket_here(&name, &[]).map_err(kerr(format!(
                    "lab {lab:?} node {:?}: create netns",
                    nodes[i].name
                )));
                if tx.send((i, made)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut result = Ok(());
        for (i, made) in rx {
            if result.is_err() {
                continue;
            }
            result = made.and_then(|(ns, mut nl)| {
                configure_node(bridge, &mut nl, &ns, br_index, plan, lab, &nodes[i])
            });
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
        }
        result
    })?;
    bridge
        .set_up(br_index, true)
        .map_err(kerr(format!("lab {lab:?}: bring {BRIDGE} up")))
}

/// One node, its namespace made (loopback up): the veth with its bridge
/// port enslaved and up and its peer made directly in the namespace, then
/// eth0 up with its addresses and default routes.
fn configure_node(
    bridge: &mut Netlink,
    nl: &mut Netlink,
    ns: &Netns,
    br_index: u32,
    plan: &LabPlan,
    lab: &str,
    node: &NodeRecord,
) -> Result<(), EngineError> {
    let what = || format!("lab {lab:?} node {:?}", node.name);
    let port = node_port(node.index);
    bridge
        .create_veth(
            &LinkSpec::new(&port).master(br_index),
            &LinkSpec::new(NODE_IF).netns(ns),
        )
        .map_err(kerr(format!("{}: create veth {port}", what())))?;
    let eth = nl
        .link_index(NODE_IF)
        .map_err(kerr(format!("{}: find {NODE_IF}", what())))?;
    // No IPv6 link-local address: a node's addresses come from the lab
    // plan, and each link-local one would cost an address probe, listener
    // reports and router solicitations that the bridge floods to every
    // other node (bringing up a 500-node lab spent some 40% of its CPU
    // time receiving and dropping them).
    nl.set_up_without_link_local(eth)
        .map_err(kerr(format!("{}: bring {NODE_IF} up", what())))?;
    // Its bridge port right after (see the module docs).
    bridge
        .set_up(port.as_str(), true)
        .map_err(kerr(format!("{}: bring {port} up", what())))?;
    for p in prefixes(node.ipv4, plan.nodes.prefix(), node.ipv6, 64) {
        nl.add_address(eth, p, AddressOptions::nodad())
            .map_err(kerr(format!("{}: add {p}", what())))?;
    }
    for via in [IpAddr::V4(plan.bridge), IpAddr::V6(plan.bridge_v6())] {
        nl.add_route(&Route::default_via(via))
            .map_err(kerr(format!("{}: add default route via {via}", what())))?;
    }
    Ok(())
}

/// Removes every namespace of a lab (nodes, then the bridge). Absent
/// parts are fine; returns what it removed.
///
/// The namespaces are released (unmounted), not waited for: the kernel
/// reaps them, and with them every veth and the lab's link in the gateway,
/// in the background. It cannot be hurried: each bridge costs an RCU grace
/// period (10–40 ms) under the global RTNL lock, so deleting links here
/// would only make this wait for it. The gateway link keeps its name
/// until then; the next lab in the slot retires it (see [`make_bridge`]).
pub fn remove(lab: &str, slot: Option<u32>) -> Result<Vec<String>, EngineError> {
    let mut removed = Vec::new();
    let bridge = bridge_netns_name(lab);
    let node_prefix = format!("{bridge}:");
    let names = Netns::list_named().map_err(kerr(format!("lab {lab:?}: list namespaces")))?;
    for name in names.iter().filter(|n| n.starts_with(&node_prefix)) {
        remove_netns(name)?;
        removed.push(format!("namespace {name}"));
    }
    if names.contains(&bridge) {
        remove_netns(&bridge)?;
        removed.push(format!("namespace {bridge}"));
        if let Some(slot) = slot {
            removed.push(format!(
                "link {} in the gateway (reaped by the kernel with {bridge})",
                lab_link(slot)
            ));
        }
    }
    Ok(removed)
}

pub fn remove_netns(name: &str) -> Result<(), EngineError> {
    match Netns::remove_named(name) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(EngineError::kernel(&format!("remove namespace {name}"), e)),
    }
}

/// Deletes links in the gateway outright: a lab link without a lab, or a
/// retired link the kernel has not reaped (a process still holds the
/// namespace of its other end). Whether it was there.
pub fn delete_gateway_link(name: &str) -> Result<bool, EngineError> {
    let Ok(gw) = Netns::open_named(gateway::GATEWAY_NETNS) else {
        return Ok(false);
    };
    let mut nl = Netlink::open_in(&gw).map_err(kerr("open netlink in the lab gateway".into()))?;
    crate::drivers::delete_link_in(&mut nl, name, "lab gateway")
}

/// A lab link, or a retired link, in the gateway.
pub struct GatewayLink {
    pub name: String,
    /// On its way out: retired, or its other end is not in a named lab
    /// namespace: that namespace was released and the kernel is reaping
    /// it (once it has begun, the link names no peer namespace at all).
    pub reaping: bool,
}

/// The lab links in the gateway, and the retired links there.
pub fn gateway_links() -> Result<Vec<GatewayLink>, EngineError> {
    let Ok(gw) = Netns::open_named(gateway::GATEWAY_NETNS) else {
        return Ok(Vec::new());
    };
    let mut nl = Netlink::open_in(&gw).map_err(kerr("open netlink in the lab gateway".into()))?;
    let links: Vec<_> = nl
        .list_links()
        .map_err(kerr("lab gateway: list links".into()))?
        .into_iter()
        .filter(|l| {
            l.name.starts_with(RETIRED_LINK_PREFIX)
                || l.name
                    .strip_prefix(gateway::LAB_LINK_PREFIX)
                    .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    // Ids of the bridge namespaces that are still named.
    let mut named = std::collections::BTreeSet::new();
    if !links.is_empty() {
        let names = Netns::list_named().map_err(kerr("list namespaces".into()))?;
        for n in names
            .iter()
            .filter(|n| n.starts_with(super::NETNS_PREFIX) && !n.contains(':'))
        {
            if let Ok(ns) = Netns::open_named(n) {
                if let Some(id) = nl
                    .netns_id(&ns)
                    .map_err(kerr(format!("lab gateway: id of namespace {n}")))?
                {
                    named.insert(id);
                }
            }
        }
    }
    Ok(links
        .into_iter()
        .map(|l| GatewayLink {
            reaping: l.name.starts_with(RETIRED_LINK_PREFIX)
                || l.peer_netns_id.is_none_or(|id| !named.contains(&id)),
            name: l.name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nft text the bridge's rules were written as before.
    fn bridge_ruleset(ports: &[NodePort]) -> String {
        let elements = |v6: bool| {
            if ports.is_empty() {
                return String::new();
            }
            let list: Vec<String> = ports
                .iter()
                .map(|p| {
                    let to = if v6 {
                        p.ipv6.to_string()
                    } else {
                        p.ipv4.to_string()
                    };
                    format!("{} . {} : {to} . {}", p.proto, p.host_port, p.port)
                })
                .collect();
            format!(" elements = {{ {} }};", list.join(", "))
        };
        format!(
            "table inet {} {{
\tmap ports4 {{ type inet_proto . inet_service : ipv4_addr . inet_service;{} }}
\tmap ports6 {{ type inet_proto . inet_service : ipv6_addr . inet_service;{} }}
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname \"{BRIDGE_UPLINK}\" meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
\t\tiifname \"{BRIDGE_UPLINK}\" meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"{BRIDGE_UPLINK}\" masquerade
\t}}
}}
",
            super::gateway::LAB_TABLE,
            elements(false),
            elements(true)
        )
    }

    #[test]
    fn the_bridge_table_is_the_old_ruleset() {
        let ports = [
            NodePort {
                proto: "tcp",
                host_port: 8080,
                ipv4: Ipv4Addr::new(172, 18, 0, 2),
                ipv6: "fd00:18::2".parse().unwrap(),
                port: 80,
            },
            NodePort {
                proto: "udp",
                host_port: 5353,
                ipv4: Ipv4Addr::new(172, 18, 0, 3),
                ipv6: "fd00:18::3".parse().unwrap(),
                port: 53,
            },
        ];
        for n in [0, 2] {
            gateway::same_as_text::assert_same(
                [bridge_table(&ports[..n])],
                &bridge_ruleset(&ports[..n]),
            );
        }
    }
}
