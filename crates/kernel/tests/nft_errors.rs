//! Errors name the table, set and element and say why; foreign tables are
//! never touched. Every test runs in its own throwaway host (needs root).

mod nft_support;

use std::net::Ipv4Addr;
use std::path::Path;

use netloom_kernel::nft::{
    apply_ruleset, Batch, Element, Family, NftError, NftSocket, SetRef, TableRef, Value, Verdict,
};
use nft_support::*;
use nix::errno::Errno;

const SKELETON: &str = "
table inet netloom-t {
    set addr4 { type ipv4_addr; }
    map pub4 { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
    map verd { type ipv4_addr : verdict; }
    chain web { }
}
";

fn inet(set: &str) -> SetRef {
    SetRef::new(Family::Inet, "netloom-t", set)
}

fn v4(d: u8) -> Value {
    Value::Ipv4Addr(Ipv4Addr::new(10, 0, 0, d))
}

fn port_key() -> Element {
    Element::concat([v4(5), Value::InetService(8080)])
}

#[test]
fn a_missing_set_is_named_with_the_cause() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let err = nft.add_elements(&inet("pub9"), &[port_key()]).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    let text = err.to_string();
    assert!(
        text.starts_with(
            "nft set inet netloom-t/pub9: add element 10.0.0.5 . 8080: No such file or directory (ENOENT): \
             the set does not exist; was the network's skeleton applied?"
        ),
        "{text}"
    );
    let err = nft.list_elements(&inet("pub9")).unwrap_err().to_string();
    assert!(
        err.contains("nft set inet netloom-t/pub9: get set:")
            && err.contains("the set does not exist"),
        "{err}"
    );
}

#[test]
fn a_missing_table_is_named_with_the_cause() {
    let Some(host) = nft_host() else { return };
    let mut nft = socket(&host);
    let set = SetRef::new(Family::Ip, "netloom-none", "addr4");
    for err in [
        nft.add_elements(&set, &[Element::new(v4(1))]).unwrap_err(),
        nft.delete_elements(&set, &[Element::new(v4(1))])
            .unwrap_err(),
        nft.flush_set(&set).unwrap_err(),
        nft.list_raw_elements(&set).unwrap_err(),
    ] {
        assert_eq!(err.errno(), Some(Errno::ENOENT));
        let text = err.to_string();
        assert!(
            text.starts_with("nft set ip netloom-none/addr4: "),
            "{text}"
        );
        assert!(
            text.contains("the table does not exist; was the network's skeleton applied?"),
            "{text}"
        );
    }
}

#[test]
fn a_value_of_the_wrong_shape_is_explained() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let cases = [
        (Element::new(v4(5)).with_data([v4(6), Value::InetService(80)]), "the key is 4 bytes but the set's key (ipv4_addr . inet_service) is 8 bytes"),
        (port_key(), "the set is a map (ipv4_addr . inet_service : ipv4_addr . inet_service); the element needs data"),
        (port_key().with_verdict(Verdict::Accept), "the map's data is ipv4_addr . inet_service, not a verdict"),
        (port_key().with_data([v4(6)]), "the data is 4 bytes but the map's data (ipv4_addr . inet_service) is 8 bytes"),
    ];
    for (element, cause) in cases {
        let err = nft
            .add_elements(&inet("pub4"), std::slice::from_ref(&element))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("add element {element}")), "{text}");
        assert!(text.contains(cause), "expected {cause:?} in {text}");
    }
    let err = nft
        .add_elements(&inet("addr4"), &[Element::new(v4(1)).with_data([v4(2)])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the set is not a map; the element must not have data"),
        "{err}"
    );
    assert!(nft.list_raw_elements(&inet("pub4")).unwrap().is_empty());
}

#[test]
fn the_failing_element_of_a_message_is_pinpointed() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let elements = [
        Element::new(v4(1)).with_verdict(Verdict::Jump("web".into())),
        Element::new(v4(2)).with_verdict(Verdict::Jump("nochain".into())),
        Element::new(v4(3)).with_verdict(Verdict::Drop),
    ];
    let err = nft.add_elements(&inet("verd"), &elements).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    let text = err.to_string();
    assert!(
        text.contains(
            "add element 10.0.0.2 : jump nochain: No such file or directory (ENOENT): \
                       the chain named by the element's verdict does not exist in the table"
        ),
        "{text}"
    );
    assert!(
        nft.list_raw_elements(&inet("verd")).unwrap().is_empty(),
        "no element of the failed call is left"
    );
}

#[test]
fn invalid_values_are_refused_before_the_kernel() {
    let Some(host) = nft_host() else { return };
    apply(
        &host,
        "table inet netloom-t { set ifaces { type ifname; }; }",
    );
    let mut nft = socket(&host);
    let set = inet("ifaces");
    let err = nft
        .add_elements(
            &set,
            &[Element::new(Value::Ifname("sixteen-bytes-xx".into()))],
        )
        .unwrap_err();
    assert!(matches!(err, NftError::InvalidValue { .. }), "{err}");
    assert!(err.to_string().contains("must be 1 to 15 bytes"), "{err}");
    let err = nft
        .commit(Batch::new().add(&set, []))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no elements given"), "{err}");
}

#[test]
fn a_rejected_ruleset_reports_nft_s_message_and_changes_nothing() {
    let Some(host) = nft_host() else { return };
    let bad = "table inet netloom-t {\n  set s { type ipv4_addr; }\n  chain c { ip saddr @nosuch drop; }\n}\n";
    let err = apply_ruleset(Some(host.netns_path()), bad).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NftError::RulesetRejected { .. }), "{text}");
    assert!(
        text.starts_with("nft -f -: ruleset rejected in network namespace /proc/"),
        "{text}"
    );
    assert!(
        text.contains("nosuch"),
        "nft's own message is included: {text}"
    );
    let mut nft = socket(&host);
    assert_eq!(
        nft.list_tables().unwrap(),
        vec![],
        "the table of a rejected ruleset is not created"
    );
}

#[test]
fn rulesets_may_name_only_netloom_tables() {
    let Some(host) = nft_host() else { return };
    for text in [
        "table inet filter { chain input { } }",
        "flush ruleset",
        "add table ip nat",
    ] {
        let err = apply_ruleset(Some(host.netns_path()), text).unwrap_err();
        assert!(matches!(err, NftError::Refused { .. }), "{text}: {err}");
    }
    assert_eq!(socket(&host).list_tables().unwrap(), vec![]);
}

#[test]
fn tables_are_listed_and_only_netloom_ones_deleted() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    apply(&host, "table ip6 netloom-six { }");
    run(&host, "nft", &["add table inet filter"]);
    let mut nft = socket(&host);
    let mut tables = nft.list_tables().unwrap();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let filter = TableRef::new(Family::Inet, "filter");
    let ours = TableRef::new(Family::Inet, "netloom-t");
    let six = TableRef::new(Family::Ip6, "netloom-six");
    assert_eq!(tables, vec![filter.clone(), six.clone(), ours.clone()]);

    let err = nft.delete_table(&filter).unwrap_err();
    assert!(matches!(err, NftError::Refused { .. }));
    assert!(
        err.to_string()
            .starts_with("nft table inet filter: refused: not a netloom table"),
        "{err}"
    );
    assert!(
        nft.table_exists(&filter).unwrap(),
        "the foreign table is untouched"
    );

    nft.delete_table(&ours).unwrap();
    assert!(!nft.table_exists(&ours).unwrap());
    assert!(nft.table_exists(&six).unwrap());
    let err = nft.delete_table(&ours).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    assert!(err.to_string().contains("nft table inet netloom-t: delete table: No such file or directory (ENOENT): the table does not exist"), "{err}");
    // Same name, other family: a different table.
    assert!(!nft
        .table_exists(&TableRef::new(Family::Ip, "netloom-six"))
        .unwrap());
}

#[test]
fn opening_in_a_missing_namespace_names_the_path() {
    let err = NftSocket::open_in(Path::new("/proc/self/ns/no-such-ns")).unwrap_err();
    assert!(matches!(err, NftError::Namespace { .. }));
    assert!(
        err.to_string()
            .starts_with("network namespace /proc/self/ns/no-such-ns: cannot enter"),
        "{err}"
    );
}

#[test]
fn a_batch_with_thousands_of_failures_fails_whole_and_the_socket_stays_usable() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    // Each operation is its own message, and each failing message gets its
    // own error reply: far more than the socket's receive buffer holds.
    let mut batch = Batch::new();
    batch.add(&inet("addr4"), [Element::new(v4(1))]);
    for i in 0..3000u32 {
        let e = Element::new(Value::Ipv4Addr(Ipv4Addr::from(0x0a01_0000 + i)));
        batch.add(&inet("nosuch"), [e]);
    }
    let err = nft.commit(&batch).unwrap_err();
    // The replies that did fit name the first failure.
    assert_eq!(err.errno(), Some(Errno::ENOENT), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("nft set inet netloom-t/nosuch: add element 10.1.0.0: No such file or directory (ENOENT): the set does not exist"), "{text}");
    assert!(text.contains("nothing in the batch was applied"), "{text}");
    assert!(nft.list_raw_elements(&inet("addr4")).unwrap().is_empty());
    // The socket is drained and answers the next request correctly.
    nft.add_elements(&inet("addr4"), &[Element::new(v4(2))])
        .unwrap();
    assert_eq!(
        nft.list_elements(&inet("addr4")).unwrap(),
        vec![Element::new(v4(2))]
    );
}
