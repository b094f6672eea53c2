//! The rule skeleton of one network: `table inet netloom-<id8>`, as
//! readable nft text.
//!
//! The text starts with `add table` and `flush table`, then declares the
//! whole table: applied to a table that exists, it replaces every rule in
//! one transaction and keeps every map element. So re-applying it (after a
//! crash, or with changed flags) is safe.

use std::fmt::Write;

use super::elements::{PORTS4, PORTS4_IP, PORTS6, PORTS6_IP};
use super::{Cidr, IpFamily, NetworkFirewall, BRIDGE_PREFIX};

impl NetworkFirewall {
    /// The network's nft text (see the module documentation of
    /// [`crate::firewall`] for what the rules do). Call
    /// [`NetworkFirewall::validate`] first: names go into the text as they
    /// are. [`super::Firewall::create_network`] does both.
    pub fn skeleton(&self) -> String {
        let table = self.table_name();
        let br = &self.bridge;
        let v4 = subnet_expr(self.subnets_of(IpFamily::V4));
        let v6 = subnet_expr(self.subnets_of(IpFamily::V6));
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let subnets: Vec<String> = self.subnets.iter().map(Cidr::to_string).collect();
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# netloom network {}: bridge {br}, subnets {}",
            self.id8,
            subnets.join(" ")
        );
        let _ = writeln!(
            t,
            "# internal: {}, isolated: {}, masquerade: {}",
            yes_no(self.internal),
            yes_no(self.isolate),
            yes_no(self.masquerade && !self.internal)
        );
        t.push_str("# Re-applying this text replaces every rule and keeps every element.\n");
        let _ = writeln!(t, "add table inet {table}");
        let _ = writeln!(t, "flush table inet {table}");
        let _ = writeln!(t, "table inet {table} {{");

        t.push_str(
            "\t# Published ports. Key: [host address .] protocol . host port;\n\
             \t# data: endpoint address . container port.\n",
        );
        for (name, key, data) in [
            (PORTS4, "inet_proto . inet_service", "ipv4_addr"),
            (
                PORTS4_IP,
                "ipv4_addr . inet_proto . inet_service",
                "ipv4_addr",
            ),
            (PORTS6, "inet_proto . inet_service", "ipv6_addr"),
            (
                PORTS6_IP,
                "ipv6_addr . inet_proto . inet_service",
                "ipv6_addr",
            ),
        ] {
            let _ = writeln!(t, "\tmap {name} {{ type {key} : {data} . inet_service; }}");
        }

        t.push_str("\n\t# DNAT of published ports, for packets to a local address.\n");
        t.push_str("\tchain published {\n");
        if self.publishes_ports() {
            t.push_str("\t\tmeta l4proto != { tcp, udp, sctp } return\n");
            let _ = writeln!(
                t,
                "\t\tdnat ip to ip daddr . meta l4proto . th dport map @{PORTS4_IP}"
            );
            let _ = writeln!(
                t,
                "\t\tmeta nfproto ipv4 dnat ip to meta l4proto . th dport map @{PORTS4}"
            );
            let _ = writeln!(
                t,
                "\t\tdnat ip6 to ip6 daddr . meta l4proto . th dport map @{PORTS6_IP}"
            );
            let _ = writeln!(
                t,
                "\t\tmeta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @{PORTS6}"
            );
        }
        t.push_str("\t}\n");

        t.push_str("\n\t# From outside and from sandboxes (hairpin).\n");
        t.push_str("\tchain prerouting {\n");
        t.push_str("\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
        if self.publishes_ports() {
            t.push_str("\t\tfib daddr type local jump published\n");
        }
        t.push_str("\t}\n");

        t.push_str("\n\t# From the host itself; loopback destinations are not published.\n");
        t.push_str("\tchain output {\n");
        // nft 1.0.6 knows the name `dstnat` only in prerouting.
        t.push_str("\t\ttype nat hook output priority -100; policy accept;\n");
        if self.publishes_ports() {
            t.push_str("\t\tip daddr != 127.0.0.0/8 fib daddr type local jump published\n");
            t.push_str("\t\tip6 daddr != ::1 fib daddr type local jump published\n");
        }
        t.push_str("\t}\n");

        t.push('\n');
        t.push_str("\tchain postrouting {\n");
        t.push_str("\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
        if !self.internal {
            t.push_str("\t\t# Hairpin: a sandbox reaching a published port of its own network.\n");
            for (ip, set) in [("ip", &v4), ("ip6", &v6)] {
                if let Some(set) = set {
                    let _ = writeln!(
                        t,
                        "\t\toifname \"{br}\" ct status dnat {ip} saddr {set} masquerade"
                    );
                }
            }
        }
        if self.masquerade && !self.internal {
            t.push_str("\t\t# Leaving through any other interface.\n");
            for (ip, set) in [("ip", &v4), ("ip6", &v6)] {
                if let Some(set) = set {
                    let _ = writeln!(t, "\t\toifname != \"{br}\" {ip} saddr {set} masquerade");
                }
            }
        }
        t.push_str("\t}\n");

        t.push('\n');
        t.push_str("\tchain forward {\n");
        t.push_str("\t\ttype filter hook forward priority filter; policy accept;\n");
        if self.internal {
            t.push_str(
                "\t\t# Internal: nothing crosses between the bridge and another interface.\n",
            );
            let _ = writeln!(t, "\t\tiifname \"{br}\" oifname != \"{br}\" drop");
            let _ = writeln!(t, "\t\toifname \"{br}\" iifname != \"{br}\" drop");
        } else {
            t.push_str("\t\t# Published ports, from anywhere (other networks too).\n");
            t.push_str("\t\tct status dnat accept\n");
        }
        if self.isolate && !self.internal {
            let other = format!("{BRIDGE_PREFIX}*");
            t.push_str("\t\t# Isolation from other netloom bridges, both ways.\n");
            let _ = writeln!(
                t,
                "\t\tiifname \"{br}\" oifname \"{other}\" oifname != \"{br}\" drop"
            );
            let _ = writeln!(
                t,
                "\t\toifname \"{br}\" iifname \"{other}\" iifname != \"{br}\" drop"
            );
        }
        if self.masquerade && !self.internal {
            t.push_str(
                "\t\t# NAT network: from outside, sandboxes are reached only through\n\
                 \t\t# published ports.\n",
            );
            let _ = writeln!(
                t,
                "\t\toifname \"{br}\" iifname != \"{BRIDGE_PREFIX}*\" \
                 ct state != {{ established, related }} drop"
            );
        }
        if !self.internal {
            let _ = writeln!(
                t,
                "\t\toifname \"{br}\" ct state established,related accept"
            );
        }
        let _ = writeln!(t, "\t\tiifname \"{br}\" accept");
        t.push_str("\t}\n}\n");
        t
    }
}

/// `10.0.0.0/24`, or `{ 10.0.0.0/24, 10.1.0.0/24 }`; `None` without subnets.
fn subnet_expr<'a>(subnets: impl Iterator<Item = &'a Cidr>) -> Option<String> {
    let all: Vec<String> = subnets.map(Cidr::to_string).collect();
    match all.len() {
        0 => None,
        1 => all.into_iter().next(),
        _ => Some(format!("{{ {} }}", all.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_data::*;

    fn rules(text: &str) -> Vec<&str> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    }

    #[test]
    fn a_nat_network_masquerades_isolates_and_publishes() {
        let text = net().skeleton();
        let r = rules(&text);
        assert_eq!(r[0], "add table inet netloom-1a2b3c4d");
        assert_eq!(r[1], "flush table inet netloom-1a2b3c4d");
        for want in [
            "oifname != \"nlbr-1a2b3c4d\" ip saddr 10.88.0.0/24 masquerade",
            "oifname != \"nlbr-1a2b3c4d\" ip6 saddr fd00:88::/64 masquerade",
            "oifname \"nlbr-1a2b3c4d\" ct status dnat ip saddr 10.88.0.0/24 masquerade",
            "iifname \"nlbr-1a2b3c4d\" oifname \"nlbr-*\" oifname != \"nlbr-1a2b3c4d\" drop",
            "oifname \"nlbr-1a2b3c4d\" iifname \"nlbr-*\" iifname != \"nlbr-1a2b3c4d\" drop",
            "fib daddr type local jump published",
            "ip daddr != 127.0.0.0/8 fib daddr type local jump published",
            "dnat ip6 to ip6 daddr . meta l4proto . th dport map @ports6_ip",
            "map ports4 { type inet_proto . inet_service : ipv4_addr . inet_service; }",
        ] {
            assert!(r.contains(&want), "missing {want:?} in\n{text}");
        }
        // The accept of published ports comes before the isolation drops.
        let accept = r
            .iter()
            .position(|l| *l == "ct status dnat accept")
            .unwrap();
        let drop = r
            .iter()
            .position(|l| l.contains("oifname \"nlbr-*\""))
            .unwrap();
        assert!(accept < drop, "{text}");
    }

    #[test]
    fn an_internal_network_drops_both_ways_and_neither_nats_nor_publishes() {
        let mut n = net();
        n.internal = true;
        let text = n.skeleton();
        let r = rules(&text);
        assert!(r.contains(&"iifname \"nlbr-1a2b3c4d\" oifname != \"nlbr-1a2b3c4d\" drop"));
        assert!(r.contains(&"oifname \"nlbr-1a2b3c4d\" iifname != \"nlbr-1a2b3c4d\" drop"));
        for absent in ["masquerade", "jump published", "dnat", "nlbr-*"] {
            assert!(
                !r.iter()
                    .any(|l| l.contains(absent) && !l.starts_with("map ")),
                "{absent:?} in\n{text}"
            );
        }
        // The maps exist all the same, so every skeleton has the same shape.
        assert!(r.iter().any(|l| l.starts_with("map ports6_ip ")));
    }

    #[test]
    fn flags_remove_exactly_their_rules() {
        let mut n = net();
        n.isolate = false;
        assert!(!n.skeleton().contains("nlbr-*\" oifname"));
        n.masquerade = false;
        let text = n.skeleton();
        assert!(!text.contains("oifname != \"nlbr-1a2b3c4d\" ip saddr"));
        assert!(!text.contains("ct state != { established, related } drop"));
        assert!(
            text.contains("ct status dnat ip saddr 10.88.0.0/24 masquerade"),
            "a routed network still needs hairpin masquerade:\n{text}"
        );
    }

    #[test]
    fn several_subnets_of_a_family_become_one_anonymous_set() {
        let mut n = net();
        n.subnets = vec![cidr("10.88.0.0/24"), cidr("10.99.0.0/16")];
        let text = n.skeleton();
        assert!(
            text.contains("ip saddr { 10.88.0.0/24, 10.99.0.0/16 } masquerade"),
            "{text}"
        );
        assert!(!text.contains("ip6 saddr"), "no IPv6 subnet:\n{text}");
    }
}
