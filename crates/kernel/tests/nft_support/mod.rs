//! Shared helpers for the nft tests: throwaway hosts with nft available,
//! and reading sets back through `nft -j`.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::Ipv4Addr;

use netloom_kernel::nft::{Element, ElementData, Family, NftSocket, Value, Verdict};
use netloom_testhost::Host;
use serde_json::{json, Value as Json};

/// A throwaway host in which `nft` can run, or `None` after printing why
/// the test is skipped.
pub fn nft_host() -> Option<Host> {
    let host = match Host::try_new() {
        Ok(host) => host,
        Err(err) => {
            netloom_testhost::skip(err);
            return None;
        }
    };
    match host.command("nft").arg("--version").output() {
        Ok(out) if out.status.success() => Some(host),
        _ => {
            netloom_testhost::skip(
                "the nft program is missing: install nftables (apt-get install nftables)",
            );
            None
        }
    }
}

/// An nf_tables socket inside `host`.
pub fn socket(host: &Host) -> NftSocket {
    NftSocket::open_in(host.netns_path()).expect("open an nf_tables socket in the test host")
}

/// Applies `text` in `host`, panicking with nft's message on failure.
pub fn apply(host: &Host, text: &str) {
    netloom_kernel::nft::apply_ruleset(Some(host.netns_path()), text)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Runs `prog args` in `host` and returns its stdout; panics on failure.
pub fn run(host: &Host, prog: &str, args: &[&str]) -> String {
    let out = host
        .command(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The elements of a set or map as nft's JSON shows them (`[]` if none),
/// read with `nft -j list set|map FAMILY TABLE NAME`.
pub fn nft_elements(host: &Host, family: Family, table: &str, set: &str) -> Vec<Json> {
    for kind in ["set", "map"] {
        let out = host
            .command("nft")
            .args(["-j", "list", kind, family.name(), table, set])
            .output()
            .expect("run nft");
        if !out.status.success() {
            continue;
        }
        let doc: Json = serde_json::from_slice(&out.stdout).expect("nft prints JSON");
        let objects = doc["nftables"].as_array().expect("nftables array");
        let found = objects
            .iter()
            .find_map(|o| o.get(kind))
            .expect("the set in nft's JSON");
        if found["name"] != set {
            continue;
        }
        return found
            .get("elem")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
    }
    panic!("nft cannot list set or map {family} {table} {set}");
}

/// How nft's JSON writes one typed value.
pub fn json_value(v: &Value) -> Json {
    match v {
        Value::Ipv4Addr(a) => json!(a.to_string()),
        Value::Ipv6Addr(a) => json!(a.to_string()),
        Value::EtherAddr(_) | Value::Ifname(_) => json!(v.to_string().trim_matches('"')),
        Value::InetProto(6) => json!("tcp"),
        Value::InetProto(17) => json!("udp"),
        Value::InetProto(p) => json!(p),
        Value::InetService(p) => json!(p),
        Value::Mark(m) | Value::U32(m) => json!(m),
        Value::Bytes(b) => panic!("no JSON form for raw bytes {b:?}"),
    }
}

fn json_values(vs: &[Value]) -> Json {
    match vs {
        [one] => json_value(one),
        many => json!({ "concat": many.iter().map(json_value).collect::<Vec<_>>() }),
    }
}

/// How nft's JSON writes one element.
pub fn json_element(e: &Element) -> Json {
    let key = json_values(&e.key);
    match &e.data {
        None => key,
        Some(ElementData::Values(v)) => json!([key, json_values(v)]),
        Some(ElementData::Verdict(v)) => {
            let verdict = match v {
                Verdict::Accept => json!({"accept": null}),
                Verdict::Drop => json!({"drop": null}),
                Verdict::Continue => json!({"continue": null}),
                Verdict::Return => json!({"return": null}),
                Verdict::Jump(c) => json!({"jump": {"target": c}}),
                Verdict::Goto(c) => json!({"goto": {"target": c}}),
            };
            json!([key, verdict])
        }
    }
}

/// Sorts JSON values by their text, for order-free comparison.
pub fn sorted(mut v: Vec<Json>) -> Vec<Json> {
    v.sort_by_key(|j| j.to_string());
    v
}

/// Asserts that nft and our decoder both see exactly `expected` in the set.
pub fn assert_elements(
    host: &Host,
    nft: &mut NftSocket,
    set: &netloom_kernel::nft::SetRef,
    expected: &[Element],
) {
    let mut ours = nft.list_elements(set).unwrap_or_else(|e| panic!("{e}"));
    let mut want = expected.to_vec();
    let key = |e: &Element| e.to_string();
    ours.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(ours, want, "{set}: decoded elements");
    let theirs = sorted(nft_elements(host, set.family, &set.table, &set.set));
    let want_json = sorted(expected.iter().map(json_element).collect());
    assert_eq!(theirs, want_json, "{set}: elements as nft lists them");
}

/// `10.0.x.y` for `i` in `0..65536`.
pub fn addr(i: u32) -> Value {
    Value::Ipv4Addr(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8))
}

/// Commits `batch` in `host`, panicking with the error on failure.
pub fn commit(host: &Host, batch: &netloom_kernel::nft::Batch) {
    socket(host).commit(batch).unwrap_or_else(|e| panic!("{e}"));
}

/// `nft list ruleset` in `host`.
pub fn ruleset_text(host: &Host) -> String {
    run(host, "nft", &["list", "ruleset"])
}

/// `nft -j list ruleset` in `host`, without handles (which count every
/// object the kernel ever made in the table) and with every element list
/// sorted.
pub fn ruleset_json(host: &Host) -> Json {
    fn normalize(v: &mut Json) {
        match v {
            Json::Object(map) => {
                map.remove("handle");
                for (key, value) in map.iter_mut() {
                    normalize(value);
                    if key == "elem" {
                        if let Json::Array(list) = value {
                            list.sort_by_key(|j| j.to_string());
                        }
                    }
                }
            }
            Json::Array(list) => list.iter_mut().for_each(normalize),
            _ => {}
        }
    }
    let mut doc: Json = serde_json::from_str(&run(host, "nft", &["-j", "list", "ruleset"]))
        .expect("nft prints JSON");
    normalize(&mut doc);
    doc
}

/// `nft --debug=netlink list ruleset` in `host`: every rule's kernel
/// expressions (registers, lengths, data) and every element's bytes.
/// Rule handles are cut from the rule lines and each set's element lines
/// are sorted (the kernel lists a hash set in its own order).
pub fn ruleset_netlink(host: &Host) -> String {
    let text = run(host, "nft", &["--debug=netlink", "list", "ruleset"]);
    let families = ["ip", "ip6", "inet", "arp", "bridge", "netdev"];
    let mut out = Vec::new();
    let mut elements: Vec<String> = Vec::new();
    let flush = |out: &mut Vec<String>, elements: &mut Vec<String>| {
        elements.sort();
        out.append(elements);
    };
    for line in text.lines() {
        if line.trim_start().starts_with("element ") {
            elements.push(line.to_string());
            continue;
        }
        flush(&mut out, &mut elements);
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() > 3 && families.contains(&words[0]) && !line.starts_with(char::is_whitespace)
        {
            out.push(words[..3].join(" "));
        } else {
            out.push(line.to_string());
        }
    }
    flush(&mut out, &mut elements);
    out.join("\n")
}

/// Every set and map of the ruleset in `host`, as our decoder reads its
/// shape from the kernel (flags, type ids, lengths, concatenation fields:
/// attributes nft's listing does not show).
pub fn set_shapes(host: &Host) -> Vec<netloom_kernel::nft::SetInfo> {
    let doc = ruleset_json(host);
    let mut nft = socket(host);
    let mut out = Vec::new();
    for o in doc["nftables"].as_array().expect("nftables array") {
        let Some(s) = o.get("set").or_else(|| o.get("map")) else {
            continue;
        };
        let family = match s["family"].as_str().expect("family") {
            "ip" => Family::Ip,
            "ip6" => Family::Ip6,
            "inet" => Family::Inet,
            other => panic!("unexpected family {other}"),
        };
        let set = netloom_kernel::nft::SetRef::new(
            family,
            s["table"].as_str().expect("table"),
            s["name"].as_str().expect("name"),
        );
        out.push(nft.set_info(&set).unwrap_or_else(|e| panic!("{e}")));
    }
    out
}

/// Asserts that the rulesets in `ours` and `theirs` are the same as nft
/// lists them (text, JSON, kernel expressions) and as the kernel
/// describes their sets.
pub fn assert_same_ruleset(ours: &Host, theirs: &Host) {
    let text = ruleset_text(theirs);
    assert!(!text.trim().is_empty(), "the reference ruleset is empty");
    assert_eq!(ruleset_text(ours), text, "nft list ruleset");
    assert_eq!(
        ruleset_json(ours),
        ruleset_json(theirs),
        "nft -j list ruleset"
    );
    assert_eq!(
        ruleset_netlink(ours),
        ruleset_netlink(theirs),
        "nft --debug=netlink list ruleset"
    );
    assert_eq!(
        set_shapes(ours),
        set_shapes(theirs),
        "sets as the kernel describes them"
    );
}
