//! The gateway: one namespace shared by every lab, between the host and
//! the labs' bridge namespaces. Made when the first lab comes up, removed
//! when the last goes down.
//!
//! The host gets one veth, [`HOST_LINK`], holding only the plan's host
//! address; no lab address or route ever appears in the host namespace.
//! Published ports are elements: the host's set says which host ports go
//! to the gateway, the gateway's maps say to which lab's bridge namespace.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use netloom_kernel::nft::{
    Batch, ChainDef, ChainType, Element, Family, Hook, KeyField, NameMatch, NftSocket, Rule,
    SetDef, SetRef, TableDef, TableRef, Value, ValueKind, PRIORITY_DSTNAT, PRIORITY_FILTER,
    PRIORITY_SRCNAT,
};
use netloom_kernel::{LinkSpec, Netlink, Netns, Route};

use super::plan::LabPlan;
use super::{fw_err, kerr};
use crate::EngineError;

/// The host's end of the host ↔ gateway veth.
pub const HOST_LINK: &str = "nlgw";
/// The gateway's named namespace (under /run/netns).
pub const GATEWAY_NETNS: &str = "nlgw";
/// The gateway's end of the host ↔ gateway veth.
pub const GATEWAY_UPLINK: &str = "uplink";
/// netloom's table for labs, in the host (`ip` and `ip6`) and in the
/// gateway and bridge namespaces (`inet`).
pub const LAB_TABLE: &str = "netloom-lab";
/// Gateway-side link names of the labs' links start with this, then the slot.
pub const LAB_LINK_PREFIX: &str = "l";

pub fn lab_link(slot: u32) -> String {
    format!("{LAB_LINK_PREFIX}{slot}")
}

pub fn gateway_path() -> std::path::PathBuf {
    netloom_kernel::named_path(GATEWAY_NETNS)
}

/// `tcp` / `udp` as the kernel numbers them.
pub fn proto_number(proto: &str) -> u8 {
    if proto == "udp" {
        17
    } else {
        6
    }
}

/// The lookup key of published ports: `meta l4proto . th dport`.
const PORT_KEY: [KeyField; 2] = [KeyField::L4proto, KeyField::ThDport];

/// The host's NAT rules, one table per family: local connections and
/// packets to a published port go to the gateway, and what the gateway
/// sends out, or what comes back through the host link, is masqueraded.
/// As nft text (and the same with `ip6`):
///
/// ```text
/// table ip netloom-lab {
///     set ports { type inet_proto . inet_service; }
///     chain prerouting {
///         type nat hook prerouting priority dstnat; policy accept;
///         fib daddr type local meta l4proto . th dport @ports dnat ip to GATEWAY
///     }
///     chain output {
///         type nat hook output priority -100; policy accept;
///         fib daddr type local meta l4proto . th dport @ports dnat ip to GATEWAY
///     }
///     chain postrouting {
///         type nat hook postrouting priority srcnat; policy accept;
///         ip saddr GATEWAY oifname != "nlgw" masquerade
///         iifname "nlgw" oifname "nlgw" masquerade
///     }
/// }
/// ```
fn host_tables(plan: &LabPlan) -> [TableDef; 2] {
    [
        (Family::Ip, IpAddr::V4(plan.gateway_v4())),
        (Family::Ip6, IpAddr::V6(plan.gateway_v6())),
    ]
    .map(|(family, gw)| {
        let host_link = || NameMatch::Is(HOST_LINK.into());
        let to_gateway = |chain: &str| {
            Rule::new(chain)
                .fib_daddr_local()
                .key_in(&PORT_KEY, "ports")
                .dnat_to(gw)
        };
        TableDef::new(family, LAB_TABLE)
            .set(SetDef::set("ports", PORT_KEY.map(KeyField::kind)))
            .chain(ChainDef::new(
                "prerouting",
                ChainType::Nat,
                Hook::Prerouting,
                PRIORITY_DSTNAT,
            ))
            .chain(ChainDef::new("output", ChainType::Nat, Hook::Output, -100))
            .chain(ChainDef::new(
                "postrouting",
                ChainType::Nat,
                Hook::Postrouting,
                PRIORITY_SRCNAT,
            ))
            .rule(to_gateway("prerouting"))
            .rule(to_gateway("output"))
            .rule(
                Rule::new("postrouting")
                    .saddr(gw)
                    .oifname(NameMatch::IsNot(HOST_LINK.into()))
                    .masquerade(),
            )
            .rule(
                Rule::new("postrouting")
                    .iifname(host_link())
                    .oifname(host_link())
                    .masquerade(),
            )
    })
}

/// The gateway's NAT rules: published ports coming from the host go to
/// their lab's bridge namespace, what leaves for the host is
/// masqueraded, and labs cannot reach each other. As nft text:
///
/// ```text
/// table inet netloom-lab {
///     map ports4 { type inet_proto . inet_service : ipv4_addr; }
///     map ports6 { type inet_proto . inet_service : ipv6_addr; }
///     chain prerouting {
///         type nat hook prerouting priority dstnat; policy accept;
///         iifname "uplink" meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
///         iifname "uplink" meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6
///     }
///     chain postrouting {
///         type nat hook postrouting priority srcnat; policy accept;
///         oifname "uplink" masquerade
///     }
///     chain forward {
///         type filter hook forward priority filter; policy accept;
///         iifname "l*" oifname "l*" drop
///     }
/// }
/// ```
fn gateway_table() -> TableDef {
    let lab_links = || NameMatch::StartsWith(LAB_LINK_PREFIX.into());
    forwarding_table(GATEWAY_UPLINK, false, [], [])
        .chain(ChainDef::new(
            "forward",
            ChainType::Filter,
            Hook::Forward,
            PRIORITY_FILTER,
        ))
        .rule(
            Rule::new("forward")
                .iifname(lab_links())
                .oifname(lab_links())
                .drop(),
        )
}

/// The shape the gateway's and every lab bridge's tables share: maps
/// `ports4` and `ports6` from (protocol, port) to an address (and a port
/// too when `with_port`), traffic coming in on `uplink` translated through
/// them, and what leaves on `uplink` masqueraded.
pub(super) fn forwarding_table(
    uplink: &str,
    with_port: bool,
    to4: impl IntoIterator<Item = Element>,
    to6: impl IntoIterator<Item = Element>,
) -> TableDef {
    let uplink = || NameMatch::Is(uplink.into());
    let kinds = PORT_KEY.map(KeyField::kind);
    let data = |addr: ValueKind| {
        if with_port {
            vec![addr, ValueKind::InetService]
        } else {
            vec![addr]
        }
    };
    TableDef::new(Family::Inet, LAB_TABLE)
        .set(SetDef::map("ports4", kinds, data(ValueKind::Ipv4Addr)).elements(to4))
        .set(SetDef::map("ports6", kinds, data(ValueKind::Ipv6Addr)).elements(to6))
        .chain(ChainDef::new(
            "prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            PRIORITY_DSTNAT,
        ))
        .chain(ChainDef::new(
            "postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            PRIORITY_SRCNAT,
        ))
        .rule(
            Rule::new("prerouting")
                .iifname(uplink())
                .nfproto(Family::Ip)
                .dnat_map(Family::Ip, &PORT_KEY, "ports4", with_port),
        )
        .rule(
            Rule::new("prerouting")
                .iifname(uplink())
                .nfproto(Family::Ip6)
                .dnat_map(Family::Ip6, &PORT_KEY, "ports6", with_port),
        )
        .rule(Rule::new("postrouting").oifname(uplink()).masquerade())
}

/// [`host_tables`] as the nft text it was written as before.
#[cfg(test)]
fn host_ruleset(plan: &LabPlan) -> String {
    let mut t = String::new();
    for (family, ip, gw) in [
        ("ip", "ip", IpAddr::V4(plan.gateway_v4())),
        ("ip6", "ip6", IpAddr::V6(plan.gateway_v6())),
    ] {
        let gw = match gw {
            IpAddr::V6(a) => format!("[{a}]"),
            IpAddr::V4(a) => a.to_string(),
        };
        let source = match family {
            "ip" => plan.gateway_v4().to_string(),
            _ => plan.gateway_v6().to_string(),
        };
        t.push_str(&format!(
            "table {family} {LAB_TABLE} {{
\tset ports {{ type inet_proto . inet_service; }}
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local meta l4proto . th dport @ports dnat {ip} to {gw}
\t}}
\tchain output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local meta l4proto . th dport @ports dnat {ip} to {gw}
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\t{ip} saddr {source} oifname != \"{HOST_LINK}\" masquerade
\t\tiifname \"{HOST_LINK}\" oifname \"{HOST_LINK}\" masquerade
\t}}
}}
"
        ));
    }
    t
}

/// [`gateway_table`] as the nft text it was written as before.
#[cfg(test)]
fn gateway_ruleset() -> String {
    format!(
        "table inet {LAB_TABLE} {{
\tmap ports4 {{ type inet_proto . inet_service : ipv4_addr; }}
\tmap ports6 {{ type inet_proto . inet_service : ipv6_addr; }}
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname \"{GATEWAY_UPLINK}\" meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
\t\tiifname \"{GATEWAY_UPLINK}\" meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"{GATEWAY_UPLINK}\" masquerade
\t}}
\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"{LAB_LINK_PREFIX}*\" oifname \"{LAB_LINK_PREFIX}*\" drop
\t}}
}}
"
    )
}

/// The gateway as [`ensure`] leaves it: complete, with its namespace.
pub struct Gateway {
    pub ns: Netns,
}

/// The file that says the gateway is complete: it holds the inode of the
/// gateway namespace it speaks for, so a gateway made again (or lost with
/// /run) is never taken for the one it described.
pub fn ready_marker(state_dir: &Path) -> PathBuf {
    state_dir.join("lab-gateway.ready")
}

fn gateway_inode() -> Option<u64> {
    std::fs::metadata(gateway_path()).ok().map(|m| m.ino())
}

/// Whether the gateway is complete, by its marker: two file reads, no
/// netlink, so a bring-up never waits for the RTNL lock just to learn it.
pub fn is_ready(state_dir: &Path) -> bool {
    let marked = std::fs::read_to_string(ready_marker(state_dir))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    marked.is_some() && marked == gateway_inode()
}

/// Records that the gateway is complete (its rules applied).
pub fn mark_ready(state_dir: &Path) -> Result<(), EngineError> {
    let marker = ready_marker(state_dir);
    let inode = gateway_inode().ok_or_else(|| {
        EngineError::from(netloom_model::ModelError::Invalid {
            object: "lab gateway".into(),
            why: format!(
                "its namespace {} vanished while it was made",
                gateway_path().display()
            ),
            fix: "run the command again".into(),
        })
    })?;
    std::fs::write(&marker, format!("{inode}\n")).map_err(|e| {
        netloom_model::ModelError::Invalid {
            object: "lab gateway".into(),
            why: format!("cannot write {} ({e})", marker.display()),
            fix: "check that the state directory is writable".into(),
        }
        .into()
    })
}

/// Makes the gateway unless it is there: the namespace, the NAT rules of
/// the host and of the gateway (one nf_tables transaction each), the
/// veth, the addresses and routes, and forwarding; then marks it ready
/// ([`mark_ready`]). Callers hold the lab lock.
pub fn ensure(
    host: &mut Netlink,
    plan: &LabPlan,
    state_dir: &Path,
) -> Result<Gateway, EngineError> {
    let what = "lab gateway";
    if is_ready(state_dir) {
        if let Ok(ns) = Netns::open_named(GATEWAY_NETNS) {
            return Ok(Gateway { ns });
        }
    }
    // Half a gateway (an interrupted command), or the last one's host
    // link still waiting to be reaped with its namespace: start over.
    remove(state_dir)?;
    super::retire_if_present(host, HOST_LINK, what)?;
    let gw = Netns::create_named(GATEWAY_NETNS)
        .map_err(kerr(format!("{what}: create netns {GATEWAY_NETNS}")))?;
    let mut host_tables_batch = Batch::new();
    for table in host_tables(plan) {
        host_tables_batch.add_table(table);
    }
    NftSocket::open()
        .and_then(|mut nft| nft.commit(&host_tables_batch))
        .map_err(fw_err(&format!("{what}: host NAT rules")))?;
    NftSocket::open_in(&gateway_path())
        .and_then(|mut nft| nft.commit(Batch::new().add_table(gateway_table())))
        .map_err(fw_err(&format!("{what}: NAT rules")))?;
    host.create_veth(
        &LinkSpec::new(HOST_LINK),
        &LinkSpec::new(GATEWAY_UPLINK).netns(&gw),
    )
    .map_err(kerr(format!("{what}: create veth {HOST_LINK}")))?;
    // No link-local address either: the host shows only the plan's host addresses.
    Netns::current()
        .and_then(|h| h.write_sysctl(&format!("net/ipv6/conf/{HOST_LINK}/addr_gen_mode"), "1"))
        .map_err(kerr(format!("{what}: configure {HOST_LINK}")))?;
    super::build::set_up_veth_end(host, what, HOST_LINK, plan.host_v4(), plan.host_v6())?;
    Netns::current()
        .and_then(|h| {
            h.write_sysctls(&[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
            ])
        })
        .map_err(kerr(format!("{what}: enable forwarding in the host")))?;
    let mut nl = Netlink::open_in(&gw).map_err(kerr(format!("{what}: open netlink")))?;
    nl.set_up("lo", true)
        .map_err(kerr(format!("{what}: bring lo up")))?;
    super::build::set_up_veth_end(
        &mut nl,
        what,
        GATEWAY_UPLINK,
        plan.gateway_v4(),
        plan.gateway_v6(),
    )?;
    for via in [IpAddr::V4(plan.host_v4()), IpAddr::V6(plan.host_v6())] {
        nl.add_route(&Route::default_via(via))
            .map_err(kerr(format!("{what}: add default route via {via}")))?;
    }
    gw.write_sysctls(&[
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
    ])
    .map_err(kerr(format!("{what}: enable forwarding")))?;
    mark_ready(state_dir)?;
    Ok(Gateway { ns: gw })
}

/// Removes the gateway and the host's lab tables; absent parts are fine.
/// Whether there was anything to remove. Needs no RTNL lock, so it never
/// waits behind the kernel reaping other labs.
///
/// The host link is left to the kernel, which reaps it with the gateway
/// namespace in the background, where a deletion would wait; [`ensure`]
/// retires it if a new gateway is wanted first.
pub fn remove(state_dir: &Path) -> Result<bool, EngineError> {
    let mut removed = false;
    match std::fs::remove_file(ready_marker(state_dir)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(netloom_model::ModelError::Invalid {
                object: "lab gateway".into(),
                why: format!("cannot remove {} ({e})", ready_marker(state_dir).display()),
                fix: "check that the state directory is writable".into(),
            }
            .into())
        }
    }
    match Netns::remove_named(GATEWAY_NETNS) {
        Ok(()) => removed = true,
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(EngineError::kernel("lab gateway: remove its namespace", e)),
    }
    let mut nft = NftSocket::open().map_err(fw_err("lab gateway: open nftables"))?;
    for family in [Family::Ip, Family::Ip6] {
        let table = TableRef::new(family, LAB_TABLE);
        if nft
            .table_exists(&table)
            .map_err(fw_err("lab gateway: read nftables"))?
        {
            nft.delete_table(&table)
                .map_err(fw_err("lab gateway: delete the host table"))?;
            removed = true;
        }
    }
    Ok(removed)
}

/// Whether any part of the gateway exists: (host link, namespace, host tables).
pub fn present(host: &mut Netlink) -> Result<Vec<String>, EngineError> {
    let mut parts = Vec::new();
    // Without its namespace, the host link is on its way out: the
    // namespace holding its other end was released, and the kernel reaps
    // the link with it.
    if netloom_kernel::named_path(GATEWAY_NETNS).exists() {
        if host
            .get_link(HOST_LINK)
            .map_err(kerr("lab gateway: read links".into()))?
            .is_some()
        {
            parts.push(format!("link {HOST_LINK}"));
        }
        parts.push(format!("namespace {GATEWAY_NETNS}"));
    }
    let mut nft = NftSocket::open().map_err(fw_err("lab gateway: open nftables"))?;
    for family in [Family::Ip, Family::Ip6] {
        let table = TableRef::new(family, LAB_TABLE);
        if nft
            .table_exists(&table)
            .map_err(fw_err("lab gateway: read nftables"))?
        {
            parts.push(format!("nftables table {family} {LAB_TABLE}"));
        }
    }
    Ok(parts)
}

/// A published port as the host and gateway know it.
pub struct Published {
    pub proto: u8,
    pub host_port: u16,
}

fn key(p: &Published) -> [Value; 2] {
    [Value::InetProto(p.proto), Value::InetService(p.host_port)]
}

/// Adds (or with `add == false` removes) a lab's published ports in the
/// host and the gateway.
pub fn set_ports(
    plan: &LabPlan,
    slot: u32,
    ports: &[Published],
    add: bool,
) -> Result<(), EngineError> {
    if ports.is_empty() {
        return Ok(());
    }
    let what = "lab gateway: published ports";
    let mut host = NftSocket::open().map_err(fw_err(what))?;
    for family in [Family::Ip, Family::Ip6] {
        let set = SetRef::new(family, LAB_TABLE, "ports");
        let elements: Vec<Element> = ports.iter().map(|p| Element::concat(key(p))).collect();
        let r = if add {
            host.add_elements(&set, &elements)
        } else {
            host.destroy_elements(&set, &elements)
        };
        r.map_err(fw_err(what))?;
    }
    let (v4, v6) = (plan.link_v4(slot).1, plan.link_v6(slot).1);
    let mut gw = NftSocket::open_in(&gateway_path()).map_err(fw_err(what))?;
    for (map, data) in [
        ("ports4", Value::Ipv4Addr(v4)),
        ("ports6", Value::Ipv6Addr(v6)),
    ] {
        let set = SetRef::new(Family::Inet, LAB_TABLE, map);
        let elements: Vec<Element> = ports
            .iter()
            .map(|p| Element::concat(key(p)).with_data([data.clone()]))
            .collect();
        let r = if add {
            gw.add_elements(&set, &elements)
        } else {
            gw.destroy_elements(&set, &elements)
        };
        r.map_err(fw_err(what))?;
    }
    Ok(())
}

/// Checks that the lab's rule definitions are the nft rulesets they
/// replaced: each is committed over netlink in one throwaway host and
/// loaded by `nft -f` from the old text in another, and nft must list
/// both the same, down to the kernel's expressions.
#[cfg(test)]
pub(super) mod same_as_text {
    use netloom_kernel::nft::{apply_ruleset, Batch, NftSocket, TableDef};
    use netloom_testhost::Host;

    fn host() -> Option<Host> {
        let host = match Host::try_new() {
            Ok(host) => host,
            Err(e) => {
                netloom_testhost::skip(e);
                return None;
            }
        };
        match host.command("nft").arg("--version").output() {
            Ok(out) if out.status.success() => Some(host),
            _ => {
                netloom_testhost::skip("the nft program is missing (apt-get install nftables)");
                None
            }
        }
    }

    fn nft(host: &Host, args: &[&str]) -> String {
        let out = host.command("nft").args(args).output().expect("run nft");
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `nft list ruleset`, and `nft --debug=netlink list ruleset` without
    /// rule handles and with each set's element lines sorted.
    fn listings(host: &Host) -> (String, String) {
        let mut lines = Vec::new();
        let mut elements = Vec::new();
        for line in nft(host, &["--debug=netlink", "list", "ruleset"]).lines() {
            if line.trim_start().starts_with("element ") {
                elements.push(line.to_string());
                continue;
            }
            elements.sort();
            lines.append(&mut elements);
            let words: Vec<&str> = line.split_whitespace().collect();
            let rule_head = !line.starts_with(char::is_whitespace)
                && ["ip", "ip6", "inet"].contains(&words.first().copied().unwrap_or(""));
            if rule_head && words.len() > 3 {
                lines.push(words[..3].join(" "));
            } else {
                lines.push(line.to_string());
            }
        }
        elements.sort();
        lines.append(&mut elements);
        (nft(host, &["list", "ruleset"]), lines.join("\n"))
    }

    pub(in crate::lab) fn assert_same(tables: impl IntoIterator<Item = TableDef>, text: &str) {
        let (Some(ours), Some(theirs)) = (host(), host()) else {
            return;
        };
        let mut batch = Batch::new();
        for t in tables {
            batch.add_table(t);
        }
        NftSocket::open_in(ours.netns_path())
            .and_then(|mut nft| nft.commit(&batch))
            .unwrap_or_else(|e| panic!("{e}"));
        apply_ruleset(Some(theirs.netns_path()), text).unwrap_or_else(|e| panic!("{e}"));
        let (text_ours, netlink_ours) = listings(&ours);
        let (text_theirs, netlink_theirs) = listings(&theirs);
        assert!(text_theirs.contains("table"), "{text_theirs}");
        assert_eq!(text_ours, text_theirs, "nft list ruleset");
        assert_eq!(
            netlink_ours, netlink_theirs,
            "nft --debug=netlink list ruleset"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::plan::PlanSettings;

    #[test]
    fn the_host_tables_are_the_old_ruleset() {
        let plan = LabPlan::resolve(&PlanSettings::default()).unwrap();
        same_as_text::assert_same(host_tables(&plan), &host_ruleset(&plan));
    }

    #[test]
    fn the_gateway_table_is_the_old_ruleset() {
        same_as_text::assert_same([gateway_table()], &gateway_ruleset());
    }
}
