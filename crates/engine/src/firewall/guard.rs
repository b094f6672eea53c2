//! The anti-spoofing guard shared by all bridge networks:
//! `table bridge netloom-guard`.
//!
//! It sees every frame entering a bridge from a port. Frames from netloom
//! veths (`nlv-*`) must match the port's facts, which are elements keyed by
//! the port's name: `ifname . ether_addr` in [`GUARD_MACS`], `ifname .
//! ipv4_addr` in [`GUARD_ADDRS4`], `ifname . ipv6_addr` in [`GUARD_ADDRS6`],
//! and the IPv6 addresses once more in [`GUARD_TARGETS6`], typed as the raw
//! target field of a neighbour advertisement (nft 1.0.6 has no name for
//! it), so a sandbox cannot advertise another's address.

use netloom_kernel::nft::{Family, SetRef, TableRef};

use super::VETH_PREFIX;

/// The guard table's name (family `bridge`).
pub const GUARD_TABLE: &str = "netloom-guard";
/// Set of `ifname . ether_addr`: each port's MAC.
pub const GUARD_MACS: &str = "macs";
/// Set of `ifname . ipv4_addr`: each port's IPv4 address.
pub const GUARD_ADDRS4: &str = "addrs4";
/// Set of `ifname . ipv6_addr`: each port's IPv6 address.
pub const GUARD_ADDRS6: &str = "addrs6";
/// Set of `iifname . @th,64,128`: each port's IPv6 address as the target of
/// a neighbour advertisement (same bytes as [`GUARD_ADDRS6`]).
pub const GUARD_TARGETS6: &str = "targets6";
pub const GUARD_ANYMAC: &str = "anymac";

/// The guard table, `bridge netloom-guard`.
pub fn guard_table() -> TableRef {
    TableRef::new(Family::Bridge, GUARD_TABLE)
}

/// The guard's sets, in the order [`GUARD_MACS`], [`GUARD_ADDRS4`],
/// [`GUARD_ADDRS6`], [`GUARD_TARGETS6`].
pub fn guard_sets() -> [SetRef; 5] {
    [
        GUARD_MACS,
        GUARD_ADDRS4,
        GUARD_ADDRS6,
        GUARD_TARGETS6,
        GUARD_ANYMAC,
    ]
    .map(|name| SetRef::new(Family::Bridge, GUARD_TABLE, name))
}

/// The guard's nft text. Like a network skeleton, re-applying it replaces
/// every rule in one transaction and keeps every element.
pub fn guard_skeleton() -> String {
    let t = GUARD_TABLE;
    let ports = format!("{VETH_PREFIX}*");
    format!(
        "\
# netloom anti-spoofing guard, shared by every bridge network: a frame
# entering a bridge from a netloom veth ({ports}) must carry that port's
# own MAC and addresses. Facts are set elements keyed by the port's name.
# Re-applying this text replaces every rule and keeps every element.
add table bridge {t}
flush table bridge {t}
table bridge {t} {{
\tset {GUARD_MACS} {{ type ifname . ether_addr; }}
\tset {GUARD_ADDRS4} {{ type ifname . ipv4_addr; }}
\tset {GUARD_ADDRS6} {{ type ifname . ipv6_addr; }}
\t# The port's IPv6 addresses again, as neighbour advertisement targets.
\tset {GUARD_TARGETS6} {{ typeof iifname . @th,64,128; }}
\t# Ports of networks made with mac_check=false: any MAC, own addresses.
\tset {GUARD_ANYMAC} {{ type ifname; }}

\tchain prerouting {{
\t\ttype filter hook prerouting priority filter; policy accept;
\t\tiifname != \"{ports}\" accept
\t\tiifname . ether saddr != @{GUARD_MACS} iifname != @{GUARD_ANYMAC} drop
\t\tether type arp jump arp_from_port
\t\tether type ip jump ipv4_from_port
\t\tether type ip6 jump ipv6_from_port
\t\t# Anything else (VLAN tags included) could smuggle other sources.
\t\tdrop
\t}}

\tchain arp_from_port {{
\t\tarp htype != 1 drop
\t\tarp hlen != 6 drop
\t\tarp ptype != ip drop
\t\tarp plen != 4 drop
\t\tiifname . arp saddr ether != @{GUARD_MACS} iifname != @{GUARD_ANYMAC} drop
\t\t# An RFC 5227 probe: \"who has this address?\" before using it.
\t\tarp saddr ip 0.0.0.0 accept
\t\tiifname . arp saddr ip @{GUARD_ADDRS4} accept
\t\tdrop
\t}}

\tchain ipv4_from_port {{
\t\ticmp type redirect drop
\t\tiifname . ip saddr @{GUARD_ADDRS4} accept
\t\tdrop
\t}}

\tchain ipv6_from_port {{
\t\t# Sandboxes are not routers.
\t\ticmpv6 type {{ nd-router-advert, nd-redirect }} drop
\t\t# Advertise only its own addresses (or link-local ones).
\t\ticmpv6 type nd-neighbor-advert @th,64,16 & 0xffc0 != 0xfe80 \
iifname . @th,64,128 != @{GUARD_TARGETS6} drop
\t\tiifname . ip6 saddr @{GUARD_ADDRS6} accept
\t\tip6 saddr fe80::/10 accept
\t\t# Duplicate address detection, before the port has an address.
\t\tip6 saddr :: icmpv6 type {{ nd-neighbor-solicit, nd-router-solicit, \
mld-listener-report, mld2-listener-report }} accept
\t\tdrop
\t}}
}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_checks_mac_then_each_protocol() {
        let text = guard_skeleton();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let pos = |l: &str| {
            lines
                .iter()
                .position(|x| *x == l)
                .unwrap_or_else(|| panic!("missing {l:?} in\n{text}"))
        };
        assert_eq!(
            pos("add table bridge netloom-guard") + 1,
            pos("flush table bridge netloom-guard")
        );
        assert!(
            pos("iifname != \"nlv-*\" accept")
                < pos("iifname . ether saddr != @macs iifname != @anymac drop")
        );
        pos("iifname . arp saddr ether != @macs iifname != @anymac drop");
        pos("iifname . ip saddr @addrs4 accept");
        pos("ip6 saddr fe80::/10 accept");
        assert!(
            pos("iifname . ip6 saddr @addrs6 accept") < pos("ip6 saddr fe80::/10 accept"),
            "{text}"
        );
        assert!(text.contains("set targets6 { typeof iifname . @th,64,128; }"));
        assert_eq!(
            guard_sets()[3].to_string(),
            "nft set bridge netloom-guard/targets6"
        );
    }
}
