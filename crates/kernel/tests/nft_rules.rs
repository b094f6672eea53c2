//! Whole tables over netlink ([`TableDef`]) against the same rulesets
//! loaded by `nft -f`: each is applied both ways, in two throwaway hosts,
//! and nft must list the two the same. The rulesets are the lab's (bridge
//! namespace, gateway, host). Every test runs in its own throwaway hosts
//! (needs root).

mod nft_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netloom_kernel::nft::{
    Batch, ChainDef, ChainType, Element, Family, Hook, KeyField, NameMatch, NftError, Rule, SetDef,
    SetRef, TableDef, TableRef, Value, ValueKind, PRIORITY_DSTNAT, PRIORITY_FILTER,
    PRIORITY_SRCNAT,
};
use netloom_testhost::Host;
use nft_support::*;
use nix::errno::Errno;

const TABLE: &str = "netloom-lab";
const KEY: [KeyField; 2] = [KeyField::L4proto, KeyField::ThDport];

/// Two throwaway hosts with nft, or `None` (the test is skipped).
fn two_hosts() -> Option<(Host, Host)> {
    Some((nft_host()?, nft_host()?))
}

/// A published port of the bridge namespace: (proto, host port, node
/// IPv4, node IPv6, node port).
type Port = (u8, u16, Ipv4Addr, Ipv6Addr, u16);

fn ports() -> Vec<Port> {
    vec![
        (
            6,
            8080,
            Ipv4Addr::new(10, 1, 0, 2),
            "fd00::2".parse().unwrap(),
            80,
        ),
        (
            17,
            5353,
            Ipv4Addr::new(10, 1, 0, 3),
            "fd00::3".parse().unwrap(),
            53,
        ),
    ]
}

fn proto_name(p: u8) -> &'static str {
    if p == 17 {
        "udp"
    } else {
        "tcp"
    }
}

/// The bridge namespace's ruleset as nft text.
fn bridge_text(ports: &[Port]) -> String {
    let elements = |v6: bool| {
        if ports.is_empty() {
            return String::new();
        }
        let list: Vec<String> = ports
            .iter()
            .map(|(proto, host, a4, a6, port)| {
                let to = if v6 { a6.to_string() } else { a4.to_string() };
                format!("{} . {host} : {to} . {port}", proto_name(*proto))
            })
            .collect();
        format!(" elements = {{ {} }};", list.join(", "))
    };
    format!(
        "table inet {TABLE} {{
\tmap ports4 {{ type inet_proto . inet_service : ipv4_addr . inet_service;{} }}
\tmap ports6 {{ type inet_proto . inet_service : ipv6_addr . inet_service;{} }}
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname \"up0\" meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
\t\tiifname \"up0\" meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"up0\" masquerade
\t}}
}}
",
        elements(false),
        elements(true)
    )
}

/// The bridge namespace's ruleset as a table definition.
fn bridge_def(ports: &[Port]) -> TableDef {
    let key = |p: &Port| Element::concat([Value::InetProto(p.0), Value::InetService(p.1)]);
    let to4 = ports
        .iter()
        .map(|p| key(p).with_data([Value::Ipv4Addr(p.2), Value::InetService(p.4)]));
    let to6 = ports
        .iter()
        .map(|p| key(p).with_data([Value::Ipv6Addr(p.3), Value::InetService(p.4)]));
    let kinds = KEY.map(KeyField::kind);
    let up = || NameMatch::Is("up0".into());
    TableDef::new(Family::Inet, TABLE)
        .set(
            SetDef::map(
                "ports4",
                kinds,
                [ValueKind::Ipv4Addr, ValueKind::InetService],
            )
            .elements(to4),
        )
        .set(
            SetDef::map(
                "ports6",
                kinds,
                [ValueKind::Ipv6Addr, ValueKind::InetService],
            )
            .elements(to6),
        )
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
                .iifname(up())
                .nfproto(Family::Ip)
                .dnat_map(Family::Ip, &KEY, "ports4", true),
        )
        .rule(
            Rule::new("prerouting")
                .iifname(up())
                .nfproto(Family::Ip6)
                .dnat_map(Family::Ip6, &KEY, "ports6", true),
        )
        .rule(Rule::new("postrouting").oifname(up()).masquerade())
}

const GATEWAY_TEXT: &str = "table inet netloom-lab {
\tmap ports4 { type inet_proto . inet_service : ipv4_addr; }
\tmap ports6 { type inet_proto . inet_service : ipv6_addr; }
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname \"uplink\" meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
\t\tiifname \"uplink\" meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"uplink\" masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"l*\" oifname \"l*\" drop
\t}
}
";

fn gateway_def() -> TableDef {
    let kinds = KEY.map(KeyField::kind);
    let uplink = || NameMatch::Is("uplink".into());
    let lab_links = || NameMatch::StartsWith("l".into());
    TableDef::new(Family::Inet, TABLE)
        .set(SetDef::map("ports4", kinds, [ValueKind::Ipv4Addr]))
        .set(SetDef::map("ports6", kinds, [ValueKind::Ipv6Addr]))
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
        .chain(ChainDef::new(
            "forward",
            ChainType::Filter,
            Hook::Forward,
            PRIORITY_FILTER,
        ))
        .rule(
            Rule::new("prerouting")
                .iifname(uplink())
                .nfproto(Family::Ip)
                .dnat_map(Family::Ip, &KEY, "ports4", false),
        )
        .rule(
            Rule::new("prerouting")
                .iifname(uplink())
                .nfproto(Family::Ip6)
                .dnat_map(Family::Ip6, &KEY, "ports6", false),
        )
        .rule(Rule::new("postrouting").oifname(uplink()).masquerade())
        .rule(
            Rule::new("forward")
                .iifname(lab_links())
                .oifname(lab_links())
                .drop(),
        )
}

const GW4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

fn gw6() -> Ipv6Addr {
    "fd99::2".parse().unwrap()
}

/// The host's ruleset (two tables) as nft text.
fn host_text() -> String {
    let mut t = String::new();
    for (family, gw, source) in [
        ("ip", GW4.to_string(), GW4.to_string()),
        ("ip6", format!("[{}]", gw6()), gw6().to_string()),
    ] {
        t.push_str(&format!(
            "table {family} {TABLE} {{
\tset ports {{ type inet_proto . inet_service; }}
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local meta l4proto . th dport @ports dnat {family} to {gw}
\t}}
\tchain output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local meta l4proto . th dport @ports dnat {family} to {gw}
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\t{family} saddr {source} oifname != \"nlgw\" masquerade
\t\tiifname \"nlgw\" oifname \"nlgw\" masquerade
\t}}
}}
"
        ));
    }
    t
}

fn host_defs() -> Vec<TableDef> {
    [
        (Family::Ip, IpAddr::V4(GW4)),
        (Family::Ip6, IpAddr::V6(gw6())),
    ]
    .into_iter()
    .map(|(family, gw)| {
        let nlgw = || NameMatch::Is("nlgw".into());
        let to_gateway = |chain: &str| {
            Rule::new(chain)
                .fib_daddr_local()
                .key_in(&KEY, "ports")
                .dnat_to(gw)
        };
        TableDef::new(family, TABLE)
            .set(SetDef::set("ports", KEY.map(KeyField::kind)))
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
                    .oifname(NameMatch::IsNot("nlgw".into()))
                    .masquerade(),
            )
            .rule(
                Rule::new("postrouting")
                    .iifname(nlgw())
                    .oifname(nlgw())
                    .masquerade(),
            )
    })
    .collect()
}

/// Commits `defs` in one batch in one host, applies `text` with nft in
/// another, and compares.
fn same_as_nft(defs: Vec<TableDef>, text: &str) {
    let Some((ours, theirs)) = two_hosts() else {
        return;
    };
    let mut batch = Batch::new();
    for def in defs {
        batch.add_table(def);
    }
    commit(&ours, &batch);
    apply(&theirs, text);
    assert_same_ruleset(&ours, &theirs);
}

#[test]
fn the_bridge_ruleset_without_ports_is_nft_s() {
    same_as_nft(vec![bridge_def(&[])], &bridge_text(&[]));
}

#[test]
fn the_bridge_ruleset_with_two_ports_is_nft_s() {
    same_as_nft(vec![bridge_def(&ports())], &bridge_text(&ports()));
}

#[test]
fn the_gateway_ruleset_is_nft_s() {
    same_as_nft(vec![gateway_def()], GATEWAY_TEXT);
}

#[test]
fn the_host_ruleset_is_nft_s() {
    same_as_nft(host_defs(), &host_text());
}

#[test]
fn interval_sets_of_concatenations_are_nft_s() {
    // nft describes the fields of a concatenated interval key
    // (NFTA_SET_DESC) and flags it as a concatenation; the set shapes
    // compared below include both.
    let def = TableDef::new(Family::Inet, "netloom-t")
        .set(
            SetDef::set("flows", [ValueKind::Ipv4Addr, ValueKind::InetService])
                .interval()
                .elements([Element::concat_range(
                    [
                        Value::Ipv4Addr(Ipv4Addr::new(10, 0, 0, 0)),
                        Value::InetService(80),
                    ],
                    [
                        Value::Ipv4Addr(Ipv4Addr::new(10, 0, 0, 255)),
                        Value::InetService(80),
                    ],
                )]),
        )
        .set(SetDef::set("ports", [ValueKind::InetService]));
    same_as_nft(
        vec![def],
        "table inet netloom-t {
\tset flows { type ipv4_addr . inet_service; flags interval; elements = { 10.0.0.0/24 . 80 } }
\tset ports { type inet_service; }
}
",
    );
}

#[test]
fn the_committed_rules_work_on_packets_as_the_elements_say() {
    // Not only listed alike: the rules are in the kernel and match.
    let Some(host) = nft_host() else { return };
    commit(&host, Batch::new().add_table(bridge_def(&ports())));
    let mut nft = socket(&host);
    let ports4 = SetRef::new(Family::Inet, TABLE, "ports4");
    let elements = nft.list_elements(&ports4).unwrap();
    assert_eq!(elements.len(), 2, "{elements:?}");
    assert!(
        elements.contains(
            &Element::concat([Value::InetProto(17), Value::InetService(5353)]).with_data([
                Value::Ipv4Addr(Ipv4Addr::new(10, 1, 0, 3)),
                Value::InetService(53)
            ])
        ),
        "{elements:?}"
    );
}

#[test]
fn an_existing_table_is_added_to_like_nft_f_does_unless_exclusive() {
    let Some((ours, theirs)) = two_hosts() else {
        return;
    };
    // Twice, as `nft -f` twice: the table, sets and chains are kept and
    // the rules appended a second time.
    for _ in 0..2 {
        commit(&ours, Batch::new().add_table(gateway_def()));
        apply(&theirs, GATEWAY_TEXT);
    }
    assert_same_ruleset(&ours, &theirs);
    let text = ruleset_text(&ours);
    assert_eq!(text.matches("masquerade").count(), 2, "{text}");

    // Exclusive: the table exists, so nothing of the batch is applied.
    let before = ruleset_text(&ours);
    let mut batch = Batch::new();
    batch.add_table(gateway_def().exclusive());
    let err = socket(&ours).commit(&batch).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EEXIST), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "nft table inet netloom-lab: create table: File exists (EEXIST): the table already exists"
        ),
        "{msg}"
    );
    assert!(msg.contains("(nothing in the batch was applied)"), "{msg}");
    assert_eq!(ruleset_text(&ours), before, "nothing changed");

    // Exclusive and absent: made as usual.
    let Some(fresh) = nft_host() else { return };
    commit(&fresh, Batch::new().add_table(gateway_def().exclusive()));
    let Some(reference) = nft_host() else { return };
    apply(&reference, GATEWAY_TEXT);
    assert_same_ruleset(&fresh, &reference);
}

#[test]
fn a_rule_naming_a_missing_set_fails_whole_and_names_it() {
    let Some(host) = nft_host() else { return };
    let def = TableDef::new(Family::Inet, "netloom-t")
        .set(SetDef::set("ports", KEY.map(KeyField::kind)))
        .chain(ChainDef::new(
            "prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            PRIORITY_DSTNAT,
        ))
        .rule(Rule::new("prerouting").key_in(&KEY, "ports").masquerade())
        .rule(
            Rule::new("prerouting")
                .iifname(NameMatch::Is("up0".into()))
                .dnat_map(Family::Ip, &KEY, "nosuch", false),
        );
    let mut batch = Batch::new();
    batch.add_table(def);
    let err = socket(&host).commit(&batch).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "nft chain inet netloom-t/prerouting: add rule 2: No such file or directory (ENOENT): "
        ),
        "{msg}"
    );
    assert!(
        msg.contains("its lookup names set \"nosuch\", which is not in the table"),
        "{msg}"
    );
    assert!(msg.contains("(nothing in the batch was applied)"), "{msg}");
    assert_eq!(
        socket(&host).list_tables().unwrap(),
        vec![],
        "no table is left behind"
    );
    assert_eq!(ruleset_text(&host).trim(), "");
}

#[test]
fn a_rule_for_a_missing_chain_is_named() {
    let Some(host) = nft_host() else { return };
    let def = TableDef::new(Family::Ip, "netloom-t").rule(Rule::new("nochain").masquerade());
    let mut batch = Batch::new();
    batch.add_table(def);
    let err = socket(&host).commit(&batch).unwrap_err().to_string();
    assert!(
        err.starts_with("nft chain ip netloom-t/nochain: add rule 1: No such file or directory"),
        "{err}"
    );
    assert!(
        err.contains("chain \"nochain\" is not in the table"),
        "{err}"
    );
    assert_eq!(socket(&host).list_tables().unwrap(), vec![]);
}

#[test]
fn bad_definitions_are_refused_before_the_kernel() {
    let Some(host) = nft_host() else { return };
    let mut nft = socket(&host);
    let refuse = |def: TableDef| {
        let mut batch = Batch::new();
        batch.add_table(def);
        socket(&host).commit(&batch).unwrap_err()
    };
    let err = refuse(TableDef::new(Family::Inet, "filter"));
    assert!(matches!(err, NftError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("not a netloom table"), "{err}");

    let err = refuse(
        TableDef::new(Family::Inet, "netloom-t").set(
            SetDef::set("ports", KEY.map(KeyField::kind))
                .elements([Element::new(Value::InetService(80))]),
        ),
    );
    assert!(
        err.to_string()
            .contains("element 80: invalid: the set's key is inet_proto . inet_service"),
        "{err}"
    );

    let err = refuse(
        TableDef::new(Family::Inet, "netloom-t")
            .rule(Rule::new("c").iifname(NameMatch::Is("a-very-long-ifname".into()))),
    );
    assert!(
        err.to_string()
            .starts_with("nft chain inet netloom-t/c: rule 1: invalid: interface name"),
        "{err}"
    );
    assert_eq!(nft.list_tables().unwrap(), vec![]);
    assert!(!nft
        .table_exists(&TableRef::new(Family::Inet, "netloom-t"))
        .unwrap());
}
