//! IPAM mode (`"ipam": {"type": "netloom"}` under another plugin): the
//! whole network configuration on stdin, addresses allocated and released
//! in netloom's store, ips and routes returned. Touches no kernel object,
//! so it runs on the machine with its own state directory.

mod cni_support;
use cni_support::{ips_of, Att, Cni, VERSIONS};
use serde_json::{json, Value};

fn under_bridge(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "pods",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "ipam": {
            "type": "netloom",
            "ranges": [
                [{ "subnet": "10.22.0.0/16", "rangeStart": "10.22.0.10", "rangeEnd": "10.22.0.12", "gateway": "10.22.0.1" }],
                [{ "subnet": "fd00:22::/64" }]
            ],
            "routes": [{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }],
        },
        "dns": { "nameservers": ["10.22.0.1"] },
    })
}

fn att(cid: &str) -> Att<'_> {
    Att {
        cid,
        netns: "/var/run/netns/unused",
        ifname: "eth0",
    }
}

fn endpoint_owners(c: &Cni) -> Vec<(String, String)> {
    c.allocations("pods")
        .iter()
        .filter(|a| a["owner"]["kind"] == "endpoint")
        .map(|a| {
            (
                a["owner"]["id"].as_str().unwrap().to_string(),
                a["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn add_check_del_in_every_version() {
    let c = Cni::machine("ipam-versions");
    for (i, v) in VERSIONS.iter().enumerate() {
        let cfg = under_bridge(v);
        let cid = format!("p{i}");
        let r = c.add(&cfg, att(&cid)).ok();
        assert_eq!(r["cniVersion"], *v);
        assert!(
            r.get("interfaces").is_none(),
            "IPAM results name no interface: {r}"
        );
        let ips = ips_of(&r);
        assert_eq!(ips.len(), 2, "{r}");
        assert_eq!(ips[0], "10.22.0.10/16", "the range's first address");
        assert!(
            ips[1].starts_with("fd00:22::") && ips[1].ends_with("/64"),
            "{r}"
        );
        assert_eq!(r["ips"][0]["gateway"], "10.22.0.1");
        for ip in r["ips"].as_array().unwrap() {
            assert!(ip.get("interface").is_none());
            assert_eq!(
                ip.get("version").is_some(),
                v.starts_with("0."),
                "{v}: {ip}"
            );
        }
        assert_eq!(
            r["routes"],
            json!([{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }])
        );
        assert_eq!(r["dns"]["nameservers"][0], "10.22.0.1");
        // The store holds exactly these for one owner.
        let owners = endpoint_owners(&c);
        assert_eq!(owners.len(), 2, "{owners:?}");
        assert_eq!(owners[0].0, owners[1].0);
        // A repeated ADD returns the same addresses.
        assert_eq!(ips_of(&c.add(&cfg, att(&cid)).ok()), ips);
        if v.starts_with("0.3") {
            c.check(&cfg, &r, att(&cid)).err(1);
        } else {
            c.check(&cfg, &r, att(&cid)).ok_empty();
            c.check(&cfg, &r, att("stranger")).err(3);
        }
        c.del(&cfg, Some(&r), att(&cid)).ok_empty();
        assert!(endpoint_owners(&c).is_empty());
        c.del(&cfg, Some(&r), att(&cid)).ok_empty();
    }
    let nets = c.networks();
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0]["driver"], "null");
    c.assert_clean();
}

#[test]
fn ranges_exhaust_and_gc_frees_stale_owners() {
    let c = Cni::machine("ipam-gc");
    let cfg = under_bridge("1.1.0");
    let mut got = Vec::new();
    for cid in ["a", "b", "c"] {
        got.push(ips_of(&c.add(&cfg, att(cid)).ok())[0].clone());
    }
    assert_eq!(got, ["10.22.0.10/16", "10.22.0.11/16", "10.22.0.12/16"]);
    let e = c.add(&cfg, att("d")).err(11);
    assert!(
        e["msg"].as_str().unwrap().contains("10.22.0.10-10.22.0.12"),
        "{e}"
    );
    // No address left: ADD cannot be served, attached containers are fine.
    let e = c.status(&cfg).err(50);
    assert!(e["msg"].as_str().unwrap().contains("IPv4"), "{e}");

    // An allocation made through the CLI is not GC's business.
    let out = c.netloom(&["ipam", "allocate", "pods", "--owner", "manual"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.gc(&cfg, &[("b", "eth0")]).ok_empty();
    let owners = endpoint_owners(&c);
    assert_eq!(
        owners.len(),
        4,
        "b (2 addresses) and manual (2): {owners:?}"
    );
    assert!(owners.iter().any(|(o, _)| o == "manual"));
    assert!(owners.iter().any(|(_, a)| a == "10.22.0.11"));
    c.status(&cfg).ok_empty();
    // Freed addresses are handed out again.
    let r = c.add(&cfg, att("d")).ok();
    assert_eq!(ips_of(&r)[0], "10.22.0.10/16");
    c.assert_clean();
}

#[test]
fn requested_addresses_and_config_conflicts() {
    let c = Cni::machine("ipam-static");
    let mut cfg = under_bridge("1.0.0");
    cfg["runtimeConfig"] = json!({ "ips": ["10.22.5.5/16"] });
    let r = c.add(&cfg, att("s")).ok();
    assert_eq!(ips_of(&r)[0], "10.22.5.5/16");
    // The legacy CNI_ARGS IP= key.
    let plain = under_bridge("1.0.0");
    let out = c.run(
        "ADD",
        &[
            ("CNI_CONTAINERID", "t"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;IP=10.22.6.6"),
        ],
        plain.to_string().as_bytes(),
    );
    assert_eq!(ips_of(&out.ok())[0], "10.22.6.6/16");
    // The same address for another container is refused.
    let e = c.add(&cfg, att("u")).err(7);
    assert!(e["msg"].as_str().unwrap().contains("10.22.5.5"), "{e}");
    // Another subnet under the same network name is refused, naming both.
    let mut other = under_bridge("1.0.0");
    other["ipam"]["ranges"] = json!([[{ "subnet": "10.23.0.0/16" }]]);
    let e = c.add(&other, att("v")).err(7);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("10.23.0.0/16") && msg.contains("10.22.0.0/16"),
        "{msg}"
    );
    assert_eq!(endpoint_owners(&c).len(), 4);
    // DEL passes even with a config netloom would refuse for ADD.
    c.del(&other, None, att("s")).ok_empty();
    assert_eq!(endpoint_owners(&c).len(), 2);
}
