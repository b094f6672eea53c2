//! Set and map elements over netlink, read back with our decoder and with
//! `nft -j`. Every test runs in its own throwaway host (needs root).

mod nft_support;

use std::net::{Ipv4Addr, Ipv6Addr};

use netloom_kernel::nft::{Batch, Element, Family, SetRef, Value, ValueKind, Verdict};
use nft_support::*;

const SKELETON: &str = r#"
table inet netloom-t {
    set addr4 { type ipv4_addr; }
    set addr6 { type ipv6_addr; }
    set macs { type ether_addr; }
    set protos { type inet_proto; }
    set ports { type inet_service; }
    set ifaces { type ifname; }
    set marks { type mark; }
    set flows { type ipv4_addr . inet_proto . inet_service; }
    map pub4 { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
    map macif { type ether_addr . ifname : mark; }
    map verd { type ipv4_addr : verdict; }
    chain web { }
    chain db { }
}
"#;

fn inet(set: &str) -> SetRef {
    SetRef::new(Family::Inet, "netloom-t", set)
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Value {
    Value::Ipv4Addr(Ipv4Addr::new(a, b, c, d))
}

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0xab, 0x01];

/// One test case per set shape: the set and elements to put in it.
fn cases() -> Vec<(SetRef, Vec<Element>)> {
    vec![
        (
            inet("addr4"),
            vec![
                Element::new(v4(10, 0, 0, 5)),
                Element::new(v4(192, 168, 1, 254)),
            ],
        ),
        (
            inet("addr6"),
            vec![
                Element::new(Value::Ipv6Addr("fd00::5".parse::<Ipv6Addr>().unwrap())),
                Element::new(Value::Ipv6Addr(
                    "2001:db8:1:2::abcd".parse::<Ipv6Addr>().unwrap(),
                )),
            ],
        ),
        (inet("macs"), vec![Element::new(Value::EtherAddr(MAC))]),
        (
            inet("protos"),
            vec![
                Element::new(Value::InetProto(6)),
                Element::new(Value::InetProto(200)),
            ],
        ),
        (
            inet("ports"),
            vec![
                Element::new(Value::InetService(80)),
                Element::new(Value::InetService(65535)),
            ],
        ),
        (
            inet("ifaces"),
            vec![
                Element::new(Value::Ifname("eth0".into())),
                Element::new(Value::Ifname("nl-0123456789ab".into())),
            ],
        ),
        (
            inet("marks"),
            vec![
                Element::new(Value::Mark(42)),
                Element::new(Value::Mark(0x8000_0001)),
            ],
        ),
        (
            inet("flows"),
            vec![
                Element::concat([v4(10, 0, 0, 1), Value::InetProto(6), Value::InetService(80)]),
                Element::concat([
                    v4(10, 0, 0, 1),
                    Value::InetProto(17),
                    Value::InetService(53),
                ]),
            ],
        ),
        (
            inet("pub4"),
            vec![
                Element::concat([v4(192, 0, 2, 1), Value::InetService(8080)])
                    .with_data([v4(172, 17, 0, 2), Value::InetService(80)]),
                Element::concat([v4(192, 0, 2, 1), Value::InetService(8443)])
                    .with_data([v4(172, 17, 0, 3), Value::InetService(443)]),
            ],
        ),
        (
            inet("macif"),
            vec![
                Element::concat([Value::EtherAddr(MAC), Value::Ifname("veth7".into())])
                    .with_data([Value::Mark(16)]),
            ],
        ),
        (
            inet("verd"),
            vec![
                Element::new(v4(10, 0, 0, 1)).with_verdict(Verdict::Jump("web".into())),
                Element::new(v4(10, 0, 0, 2)).with_verdict(Verdict::Accept),
                Element::new(v4(10, 0, 0, 3)).with_verdict(Verdict::Goto("db".into())),
                Element::new(v4(10, 0, 0, 4)).with_verdict(Verdict::Drop),
                Element::new(v4(10, 0, 0, 5)).with_verdict(Verdict::Return),
                Element::new(v4(10, 0, 0, 6)).with_verdict(Verdict::Continue),
            ],
        ),
    ]
}

#[test]
fn every_shape_round_trips_through_the_kernel_and_nft() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    for (set, elements) in cases() {
        assert_elements(&host, &mut nft, &set, &[]);
        nft.add_elements(&set, &elements)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_elements(&host, &mut nft, &set, &elements);
        // Delete the first element only; the rest stay.
        nft.delete_elements(&set, &elements[..1])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_elements(&host, &mut nft, &set, &elements[1..]);
    }
}

#[test]
fn elements_added_by_nft_decode_to_typed_values() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    run(
        &host,
        "nft",
        &["add element inet netloom-t pub4 { 192.0.2.9 . 22 : 172.17.0.9 . 2222 }"],
    );
    run(
        &host,
        "nft",
        &["add element inet netloom-t macif { 02:00:00:00:ab:01 . \"eth1\" : 0x7 }"],
    );
    let mut nft = socket(&host);
    let pub4 = nft.list_elements(&inet("pub4")).unwrap();
    assert_eq!(
        pub4,
        vec![Element::concat([v4(192, 0, 2, 9), Value::InetService(22)])
            .with_data([v4(172, 17, 0, 9), Value::InetService(2222)])]
    );
    let macif = nft.list_elements(&inet("macif")).unwrap();
    assert_eq!(
        macif,
        vec![
            Element::concat([Value::EtherAddr(MAC), Value::Ifname("eth1".into())])
                .with_data([Value::Mark(7)])
        ]
    );
    let raw = nft.list_raw_elements(&inet("pub4")).unwrap();
    assert_eq!(
        raw[0].key,
        vec![192, 0, 2, 9, 0, 22, 0, 0],
        "key bytes: address, then port padded to 4"
    );
}

#[test]
fn set_info_reports_types_and_lengths() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let pub4 = nft.set_info(&inet("pub4")).unwrap();
    assert!(pub4.is_map() && !pub4.is_verdict_map() && pub4.is_concat());
    assert_eq!(
        pub4.key_kinds(),
        Some(vec![ValueKind::Ipv4Addr, ValueKind::InetService])
    );
    assert_eq!(
        pub4.data_kinds(),
        Some(vec![ValueKind::Ipv4Addr, ValueKind::InetService])
    );
    assert_eq!((pub4.key_len, pub4.data_len), (8, 8));
    assert_eq!(pub4.key_type_name(), "ipv4_addr . inet_service");
    let verd = nft.set_info(&inet("verd")).unwrap();
    assert!(verd.is_verdict_map());
    assert_eq!(verd.data_type_name(), "verdict");
    let ifaces = nft.set_info(&inet("ifaces")).unwrap();
    assert!(!ifaces.is_map());
    assert_eq!(
        (ifaces.key_kinds(), ifaces.key_len),
        (Some(vec![ValueKind::Ifname]), 16)
    );
}

#[test]
fn every_family_takes_elements() {
    let Some(host) = nft_host() else { return };
    apply(
        &host,
        "table ip netloom-4 { set s { type ipv4_addr . inet_service; }; }
         table ip6 netloom-6 { set s { type ipv6_addr; }; }
         table bridge netloom-br { set s { type ether_addr; }; }
         table netdev netloom-dev { set s { type ifname; }; }",
    );
    let mut nft = socket(&host);
    let cases = [
        (
            SetRef::new(Family::Ip, "netloom-4", "s"),
            Element::concat([v4(10, 1, 2, 3), Value::InetService(443)]),
        ),
        (
            SetRef::new(Family::Ip6, "netloom-6", "s"),
            Element::new(Value::Ipv6Addr(Ipv6Addr::LOCALHOST)),
        ),
        (
            SetRef::new(Family::Bridge, "netloom-br", "s"),
            Element::new(Value::EtherAddr(MAC)),
        ),
        (
            SetRef::new(Family::Netdev, "netloom-dev", "s"),
            Element::new(Value::Ifname("lo".into())),
        ),
    ];
    for (set, element) in cases {
        nft.add_elements(&set, std::slice::from_ref(&element))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_elements(&host, &mut nft, &set, &[element]);
    }
}

#[test]
fn a_batch_across_sets_lands_together() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let endpoint = Element::new(v4(10, 0, 0, 7));
    let ports = [
        Element::concat([v4(192, 0, 2, 1), Value::InetService(8080)])
            .with_data([v4(10, 0, 0, 7), Value::InetService(80)]),
        Element::concat([v4(192, 0, 2, 1), Value::InetService(8443)])
            .with_data([v4(10, 0, 0, 7), Value::InetService(443)]),
    ];
    let mut batch = Batch::new();
    batch
        .add(&inet("addr4"), [endpoint.clone()])
        .add(&inet("pub4"), ports.clone());
    nft.commit(&batch).unwrap_or_else(|e| panic!("{e}"));
    assert_elements(
        &host,
        &mut nft,
        &inet("addr4"),
        std::slice::from_ref(&endpoint),
    );
    assert_elements(&host, &mut nft, &inet("pub4"), &ports);
    let mut undo = Batch::new();
    undo.delete(&inet("pub4"), ports)
        .delete(&inet("addr4"), [endpoint]);
    nft.commit(&undo).unwrap_or_else(|e| panic!("{e}"));
    assert_elements(&host, &mut nft, &inet("addr4"), &[]);
    assert_elements(&host, &mut nft, &inet("pub4"), &[]);
}

#[test]
fn a_failing_batch_applies_nothing() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let kept = Element::new(v4(10, 0, 0, 1));
    nft.add_elements(&inet("addr4"), std::slice::from_ref(&kept))
        .unwrap();

    // Valid adds to two sets, then a delete of an absent element.
    let mut batch = Batch::new();
    batch
        .add(&inet("addr4"), [Element::new(v4(10, 0, 0, 2))])
        .add(&inet("ports"), [Element::new(Value::InetService(22))])
        .delete(&inet("addr4"), [Element::new(v4(10, 9, 9, 9))]);
    let err = nft.commit(&batch).unwrap_err().to_string();
    assert!(err.contains("delete element 10.9.9.9"), "{err}");
    assert!(err.contains("nothing in the batch was applied"), "{err}");
    assert_elements(&host, &mut nft, &inet("addr4"), std::slice::from_ref(&kept));
    assert_elements(&host, &mut nft, &inet("ports"), &[]);

    // A failure first, valid work after it.
    let mut batch = Batch::new();
    batch
        .add(&inet("nosuch"), [Element::new(v4(10, 0, 0, 3))])
        .delete(&inet("addr4"), [kept.clone()])
        .flush(&inet("addr4"));
    let err = nft.commit(&batch).unwrap_err().to_string();
    assert!(err.contains("the set does not exist"), "{err}");
    assert_elements(&host, &mut nft, &inet("addr4"), std::slice::from_ref(&kept));
}

#[test]
fn add_create_delete_and_destroy_semantics() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let set = inet("addr4");
    let e = Element::new(v4(10, 0, 0, 9));
    nft.add_elements(&set, std::slice::from_ref(&e)).unwrap();
    nft.add_elements(&set, std::slice::from_ref(&e))
        .expect("adding an existing element is fine");
    let err = nft
        .create_elements(&set, std::slice::from_ref(&e))
        .unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::EEXIST));
    assert!(
        err.to_string().contains(
            "create element 10.0.0.9: File exists (EEXIST): the element is already in the set"
        ),
        "{err}"
    );
    nft.destroy_elements(&set, &[e.clone(), Element::new(v4(10, 0, 0, 10))])
        .expect("destroy ignores absent elements");
    assert_elements(&host, &mut nft, &set, &[]);
    let err = nft
        .delete_elements(&set, std::slice::from_ref(&e))
        .unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::ENOENT));
    assert!(
        err.to_string().contains("the element is not in the set"),
        "{err}"
    );
    // A map key with different data is a clash, even with `add`.
    let pub4 = inet("pub4");
    let key = Element::concat([v4(192, 0, 2, 1), Value::InetService(80)]);
    nft.add_elements(
        &pub4,
        &[key
            .clone()
            .with_data([v4(10, 0, 0, 1), Value::InetService(80)])],
    )
    .unwrap();
    let err = nft
        .add_elements(
            &pub4,
            &[key.with_data([v4(10, 0, 0, 2), Value::InetService(80)])],
        )
        .unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::EEXIST), "{err}");
}

#[test]
fn flush_empties_a_set() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let set = inet("ports");
    let elements: Vec<_> = (1000..1100)
        .map(|p| Element::new(Value::InetService(p)))
        .collect();
    nft.add_elements(&set, &elements).unwrap();
    assert_eq!(nft.list_raw_elements(&set).unwrap().len(), 100);
    nft.flush_set(&set).unwrap();
    assert_elements(&host, &mut nft, &set, &[]);
}

#[test]
fn a_thousand_elements_one_batch_each() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let set = inet("pub4");
    let element = |i: u32| {
        Element::concat([addr(i), Value::InetService(8000 + (i % 1000) as u16)])
            .with_data([addr(i + 1), Value::InetService(80)])
    };
    let all: Vec<_> = (0..1000).map(element).collect();
    for e in &all {
        nft.add_elements(&set, std::slice::from_ref(e))
            .unwrap_or_else(|err| panic!("{err}"));
    }
    assert_elements(&host, &mut nft, &set, &all);
    for e in &all[..500] {
        nft.delete_elements(&set, std::slice::from_ref(e))
            .unwrap_or_else(|err| panic!("{err}"));
    }
    assert_elements(&host, &mut nft, &set, &all[500..]);
}

#[test]
fn a_large_batch_is_split_into_several_messages() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let mut nft = socket(&host);
    let set = inet("addr4");
    let all: Vec<_> = (0..20_000).map(|i| Element::new(addr(i))).collect();
    nft.add_elements(&set, &all)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nft.list_raw_elements(&set).unwrap().len(), 20_000);
    assert_eq!(
        nft_elements(&host, Family::Inet, "netloom-t", "addr4").len(),
        20_000
    );
    nft.delete_elements(&set, &all)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(nft.list_raw_elements(&set).unwrap().is_empty());
}

#[test]
fn ranges_and_prefixes_in_interval_sets() {
    let Some(host) = nft_host() else { return };
    apply(
        &host,
        "table inet netloom-t {
            set nets4 { type ipv4_addr; flags interval; }
            set nets6 { type ipv6_addr; flags interval; }
            set cnets { type ipv4_addr . inet_service; flags interval; }
            set portr { type inet_service; flags interval; }
        }",
    );
    let mut nft = socket(&host);
    let prefix = |s: &str, len| Element::prefix(s.parse().unwrap(), len);
    let one = |a, b, c, d| Element::range(v4(a, b, c, d), v4(a, b, c, d));
    let nets4 = inet("nets4");
    let elements = vec![
        prefix("10.0.0.0", 24),
        prefix("10.0.1.0", 24), // adjacent to the first
        Element::range(v4(192, 168, 0, 0), v4(192, 168, 0, 10)),
        one(172, 16, 0, 5),
        prefix("255.255.255.0", 24), // runs to the top: no end element
    ];
    nft.add_elements(&nets4, &elements)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = nft.list_elements(&nets4).unwrap();
    got.sort_by_key(|e| e.to_string());
    let mut want = elements.clone();
    want.sort_by_key(|e| e.to_string());
    assert_eq!(got, want);
    let nft_prefix = |a: &str, len: u8| serde_json::json!({"prefix": {"addr": a, "len": len}});
    assert_eq!(
        sorted(nft_elements(&host, Family::Inet, "netloom-t", "nets4")),
        sorted(vec![
            nft_prefix("10.0.0.0", 24),
            nft_prefix("10.0.1.0", 24),
            serde_json::json!({"range": ["192.168.0.0", "192.168.0.10"]}),
            serde_json::json!("172.16.0.5"),
            nft_prefix("255.255.255.0", 24),
        ])
    );
    // The kernel matches by range.
    let has = |addr: &str| {
        let element = format!("{{ {addr} }}");
        host.command("nft")
            .args(["get", "element", "inet", "netloom-t", "nets4", &element])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(has("10.0.0.77") && has("10.0.1.255") && has("192.168.0.10") && has("255.255.255.255"));
    assert!(
        !has("10.0.2.0") && !has("192.168.0.11") && !has("172.16.0.6") && !has("9.255.255.255")
    );
    // Deleting a range leaves its neighbour whole.
    nft.delete_elements(&nets4, &elements[..1])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!has("10.0.0.77") && has("10.0.1.0") && has("10.0.1.255"));

    let nets6 = inet("nets6");
    let v6 = vec![prefix("fd00:1::", 64), prefix("2001:db8::1", 128)];
    nft.add_elements(&nets6, &v6).unwrap();
    assert_elements_unordered(&mut nft, &nets6, &v6);

    let cnets = inet("cnets");
    let c = vec![Element::concat_range(
        [v4(10, 0, 0, 0), Value::InetService(80)],
        [v4(10, 0, 0, 255), Value::InetService(89)],
    )];
    nft.add_elements(&cnets, &c)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_elements_unordered(&mut nft, &cnets, &c);
    assert_eq!(
        nft_elements(&host, Family::Inet, "netloom-t", "cnets"),
        vec![serde_json::json!({"concat": [nft_prefix("10.0.0.0", 24), {"range": [80, 89]}]})]
    );
    nft.delete_elements(&cnets, &c).unwrap();
    assert!(nft.list_raw_elements(&cnets).unwrap().is_empty());

    // Ranges that nft added (with its lower-bound end marker) decode too.
    run(
        &host,
        "nft",
        &["add element inet netloom-t portr { 1000-2000, 8080 }"],
    );
    let portr = inet("portr");
    assert_elements_unordered(
        &mut nft,
        &portr,
        &[
            Element::range(Value::InetService(1000), Value::InetService(2000)),
            Element::range(Value::InetService(8080), Value::InetService(8080)),
        ],
    );
}

fn assert_elements_unordered(
    nft: &mut netloom_kernel::nft::NftSocket,
    set: &SetRef,
    want: &[Element],
) {
    let mut got = nft.list_elements(set).unwrap_or_else(|e| panic!("{e}"));
    let mut want = want.to_vec();
    got.sort_by_key(|e| e.to_string());
    want.sort_by_key(|e| e.to_string());
    assert_eq!(got, want, "{set}");
}

/// After a removal, closing an nf_tables socket makes the kernel wait for
/// an RCU grace period (10-40 ms). Dropping the socket hands that wait to
/// a detached process: the drop is quick and the removal stands.
#[test]
fn dropping_a_socket_after_a_removal_does_not_wait_for_the_kernel() {
    let Some(host) = nft_host() else { return };
    apply(&host, SKELETON);
    let set = inet("ports");
    let mut drops = Vec::new();
    for round in 0..10u16 {
        let mut nft = socket(&host);
        let e = [Element::new(Value::InetService(2000 + round))];
        nft.add_elements(&set, &e).unwrap();
        nft.delete_elements(&set, &e).unwrap();
        let t = std::time::Instant::now();
        drop(nft);
        drops.push(t.elapsed());
    }
    let mut nft = socket(&host);
    assert_elements(&host, &mut nft, &set, &[]);
    drops.sort();
    let median = drops[drops.len() / 2];
    println!("drop after a removal: {drops:?}");
    assert!(
        median < std::time::Duration::from_millis(8),
        "median drop took {median:?}: {drops:?}"
    );
}
