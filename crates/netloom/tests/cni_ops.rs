//! The main plugin (`"type": "netloom"`) driven as libcni drives it, in
//! throwaway hosts: ADD, CHECK, DEL for every version, GC, STATUS, and the
//! kernel state read back after each.

mod cni_support;
use cni_support::{bare, conf, ips_of, Att, Cni, VERSIONS};
use serde_json::{json, Value};

fn web(version: &str) -> Value {
    conf(
        version,
        "web",
        json!({ "driver": "bridge", "subnets": ["10.88.0.0/24", "fd00:88::/64"] }),
    )
}

fn nlv_links(c: &Cni) -> Vec<String> {
    c.host_links()
        .into_iter()
        .filter(|l| l.starts_with("nlv-"))
        .collect()
}

#[test]
fn add_check_del_in_every_version() {
    let Some(c) = Cni::host() else { return };
    for (i, v) in VERSIONS.iter().enumerate() {
        let cid = format!("ctr{i}");
        let ns = c.netns(&cid);
        let att = Att {
            cid: &cid,
            netns: &ns,
            ifname: "eth0",
        };
        let cfg = web(v);
        let r = c.add(&cfg, att).ok();
        assert_eq!(r["cniVersion"], *v);
        let ips = ips_of(&r);
        assert_eq!(ips.len(), 2, "{r}");
        // The sandbox interface is listed with its sandbox, the ips point at it.
        let ifaces = r["interfaces"].as_array().unwrap();
        let idx = ifaces.iter().position(|i| i["name"] == "eth0").unwrap();
        assert_eq!(ifaces[idx]["sandbox"], ns.as_str());
        let host_end = ifaces
            .iter()
            .find(|i| i["name"].as_str().unwrap().starts_with("nlv-"))
            .unwrap_or_else(|| panic!("no host end in {r}"));
        // The host end's MAC, as the host's kernel has it.
        let out = c.sh_ok(&format!(
            "ip -j link show dev {}",
            host_end["name"].as_str().unwrap()
        ));
        let link: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(host_end["mac"], link[0]["address"], "{r}");
        for ip in r["ips"].as_array().unwrap() {
            assert_eq!(ip["interface"], idx);
            let legacy = v.starts_with("0.");
            assert_eq!(ip.get("version").is_some(), legacy, "{v}: {ip}");
            if legacy {
                let fam = if ip["address"].as_str().unwrap().contains(':') {
                    "6"
                } else {
                    "4"
                };
                assert_eq!(ip["version"], fam);
            }
        }
        assert_eq!(r["ips"][0]["gateway"], "10.88.0.1");
        let routes = r["routes"].as_array().unwrap();
        assert!(
            routes.contains(&json!({"dst": "0.0.0.0/0", "gw": "10.88.0.1"})),
            "{r}"
        );
        assert!(
            routes.contains(&json!({"dst": "::/0", "gw": "fd00:88::1"})),
            "{r}"
        );
        // Read back from the kernel.
        let have = c.addrs(&cid, "eth0");
        for a in &ips {
            assert!(have.contains(a), "{a} not in {have:?}");
        }
        let link = c.ip_json(&cid, "link show dev eth0");
        assert_eq!(link[0]["address"], ifaces[idx]["mac"]);
        let def = c.ip_json(&cid, "route show default");
        assert_eq!(def[0]["gateway"], "10.88.0.1");
        assert!(c.ping(&cid, "10.88.0.1"), "{v}: sandbox -> gateway");

        // CHECK exists from 0.4.0 on.
        if v.starts_with("0.3") {
            let e = c.check(&cfg, &r, att).err(1);
            assert!(e["msg"].as_str().unwrap().contains("0.4.0"), "{e}");
        } else {
            c.check(&cfg, &r, att).ok_empty();
        }
        c.del(&cfg, Some(&r), att).ok_empty();
        assert!(
            !c.sh(&format!("ip -n {cid} link show dev eth0"))
                .status
                .success(),
            "{v}: eth0 removed"
        );
        // DEL again: still success.
        c.del(&cfg, Some(&r), att).ok_empty();
    }
    assert!(c.endpoints().is_empty());
    assert!(nlv_links(&c).is_empty());
    c.assert_clean();
}

#[test]
fn two_containers_reach_each_other_and_addresses_differ() {
    let Some(c) = Cni::host() else { return };
    let cfg = web("1.1.0");
    let (na, nb) = (c.netns("a"), c.netns("b"));
    let ra = c
        .add(
            &cfg,
            Att {
                cid: "a",
                netns: &na,
                ifname: "eth0",
            },
        )
        .ok();
    let rb = c
        .add(
            &cfg,
            Att {
                cid: "b",
                netns: &nb,
                ifname: "eth0",
            },
        )
        .ok();
    let (ia, ib) = (ips_of(&ra), ips_of(&rb));
    assert_ne!(ia, ib);
    // Loopback is the runtime's (its `loopback` plugin): left as it was.
    let lo = c.ip_json("a", "link show lo");
    assert!(
        !lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{lo}"
    );
    assert!(c.ping("a", bare(&ib[0])), "a -> b over IPv4");
    assert!(c.ping("a", bare(&ib[1])), "a -> b over IPv6");
    assert!(c.ping("b", bare(&ia[0])), "b -> a over IPv4");
    // A second interface of the same container on the same network.
    let r2 = c
        .add(
            &cfg,
            Att {
                cid: "a",
                netns: &na,
                ifname: "net1",
            },
        )
        .ok();
    assert_eq!(r2["interfaces"][1]["name"], "net1");
    assert!(c.addrs("a", "net1").contains(&ips_of(&r2)[0]));
    // The same (container, ifname) again is refused; nothing changes.
    let before = c.endpoints().len();
    let e = c
        .add(
            &cfg,
            Att {
                cid: "a",
                netns: &na,
                ifname: "eth0",
            },
        )
        .err(7);
    assert!(
        e["msg"].as_str().unwrap().contains("already has interface"),
        "{e}"
    );
    assert_eq!(c.endpoints().len(), before);
    c.assert_clean();
}

#[test]
fn del_succeeds_when_the_netns_or_interface_is_gone() {
    let Some(c) = Cni::host() else { return };
    let cfg = web("1.0.0");
    let ns = c.netns("gone");
    let att = Att {
        cid: "gone",
        netns: &ns,
        ifname: "eth0",
    };
    let r = c.add(&cfg, att).ok();
    assert_eq!(nlv_links(&c).len(), 1);
    c.sh_ok("ip netns del gone");
    c.del(&cfg, Some(&r), att).ok_empty();
    assert!(nlv_links(&c).is_empty(), "host side of the veth removed");
    assert!(c.endpoints().is_empty());
    let addrs: Vec<Value> = c
        .allocations("web")
        .into_iter()
        .filter(|a| a["owner"]["kind"] == "endpoint")
        .collect();
    assert!(addrs.is_empty(), "{addrs:?}");
    // Without CNI_NETNS, for a container never added, on an unknown network.
    c.del(
        &cfg,
        None,
        Att {
            cid: "never",
            netns: "",
            ifname: "eth0",
        },
    )
    .ok_empty();
    let other = conf("1.0.0", "nosuch", json!({}));
    c.del(
        &other,
        None,
        Att {
            cid: "x",
            netns: "",
            ifname: "eth0",
        },
    )
    .ok_empty();
    // The interface removed behind netloom's back.
    let ns2 = c.netns("bare");
    let att2 = Att {
        cid: "bare",
        netns: &ns2,
        ifname: "eth0",
    };
    let r2 = c.add(&cfg, att2).ok();
    c.sh_ok("ip -n bare link del eth0");
    c.del(&cfg, Some(&r2), att2).ok_empty();
    assert!(c.endpoints().is_empty());
    c.assert_clean();
}

#[test]
fn check_reads_back_interface_addresses_and_routes() {
    let Some(c) = Cni::host() else { return };
    let cfg = conf(
        "1.1.0",
        "web",
        json!({ "subnets": ["10.88.0.0/24"], "routes": [{"dst": "192.168.50.0/24"}] }),
    );
    let ns = c.netns("k");
    let att = Att {
        cid: "k",
        netns: &ns,
        ifname: "eth0",
    };
    let r = c.add(&cfg, att).ok();
    assert!(
        r["routes"]
            .as_array()
            .unwrap()
            .contains(&json!({"dst": "192.168.50.0/24", "gw": "10.88.0.1"})),
        "{r}"
    );
    let routes = c.ip_json("k", "route show 192.168.50.0/24");
    assert_eq!(routes[0]["gateway"], "10.88.0.1", "{routes}");
    c.check(&cfg, &r, att).ok_empty();

    // A route removed: CHECK names it.
    c.sh_ok("ip -n k route del 192.168.50.0/24");
    let e = c.check(&cfg, &r, att).err(101);
    assert!(
        e["msg"].as_str().unwrap().contains("192.168.50.0/24"),
        "{e}"
    );
    c.sh_ok("ip -n k route add 192.168.50.0/24 via 10.88.0.1");
    c.check(&cfg, &r, att).ok_empty();

    // An address removed: CHECK names it.
    let addr = ips_of(&r)[0].clone();
    c.sh_ok(&format!("ip -n k addr del {addr} dev eth0"));
    let e = c.check(&cfg, &r, att).err(101);
    assert!(e["msg"].as_str().unwrap().contains(bare(&addr)), "{e}");

    // A prevResult naming an address netloom never gave.
    let mut forged = r.clone();
    forged["ips"][0]["address"] = json!("10.88.0.200/24");
    assert_eq!(c.check(&cfg, &forged, att).err(101)["code"], 101);

    // The interface gone.
    c.sh_ok("ip -n k link del eth0");
    let e = c.check(&cfg, &r, att).err(101);
    assert!(e["msg"].as_str().unwrap().contains("missing"), "{e}");
    // Unknown attachment.
    c.check(
        &cfg,
        &r,
        Att {
            cid: "other",
            netns: &ns,
            ifname: "eth0",
        },
    )
    .err(3);
    // No prevResult.
    let out = c.run(
        "CHECK",
        &[
            ("CNI_CONTAINERID", "k"),
            ("CNI_NETNS", &ns),
            ("CNI_IFNAME", "eth0"),
        ],
        cfg.to_string().as_bytes(),
    );
    assert!(out.err(7)["msg"].as_str().unwrap().contains("prevResult"));
}

#[test]
fn gc_removes_attachments_not_listed_as_valid() {
    let Some(c) = Cni::host() else { return };
    let cfg = web("1.1.0");
    let mut results = Vec::new();
    for n in ["g1", "g2", "g3", "g4"] {
        let ns = c.netns(n);
        results.push(
            c.add(
                &cfg,
                Att {
                    cid: n,
                    netns: &ns,
                    ifname: "eth0",
                },
            )
            .ok(),
        );
    }
    // A CLI-made endpoint on the same network: GC leaves it alone.
    c.sh_ok("ip netns add cli");
    let out = c.netloom(&["connect", "web", "cli"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(nlv_links(&c).len(), 5);

    c.gc(&cfg, &[("g1", "eth0"), ("g3", "eth0")]).ok_empty();
    let left: Vec<String> = c
        .endpoints()
        .iter()
        .map(|e| e["container_id"].as_str().unwrap_or("cli").to_string())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        left.contains(&"g1".into()) && left.contains(&"g3".into()) && left.contains(&"cli".into())
    );
    assert_eq!(nlv_links(&c).len(), 3);
    assert!(
        !c.sh("ip -n g2 link show dev eth0").status.success(),
        "g2's interface is gone"
    );
    assert!(
        c.ping("g1", bare(&ips_of(&results[2])[0])),
        "valid attachments keep working"
    );

    // The older key is honoured too.
    let mut old = cfg.clone();
    old["cni.dev/attachments"] = json!([{ "containerID": "g1", "ifname": "eth0" }]);
    c.run("GC", &[], old.to_string().as_bytes()).ok_empty();
    assert_eq!(c.endpoints().len(), 2);

    // GC is 1.1.0 only.
    c.gc(&web("1.0.0"), &[]).err(1);
    assert_eq!(c.endpoints().len(), 2);
    c.assert_clean();
}

#[test]
fn status_answers_and_reports_exhaustion() {
    let Some(c) = Cni::host() else { return };
    // A /30: one gateway and one address for containers.
    let cfg = conf("1.1.0", "tiny", json!({ "subnets": ["10.77.0.0/30"] }));
    c.status(&cfg).ok_empty();
    let ns = c.netns("t1");
    let r = c
        .add(
            &cfg,
            Att {
                cid: "t1",
                netns: &ns,
                ifname: "eth0",
            },
        )
        .ok();
    assert_eq!(ips_of(&r), ["10.77.0.2/30"]);
    let e = c.status(&cfg).err(50);
    assert!(e["msg"].as_str().unwrap().contains("no free IPv4"), "{e}");
    // ADD itself fails cleanly, and nothing is left of it.
    let ns2 = c.netns("t2");
    let e = c
        .add(
            &cfg,
            Att {
                cid: "t2",
                netns: &ns2,
                ifname: "eth0",
            },
        )
        .err(11);
    assert!(e["msg"].as_str().unwrap().contains("tiny"), "{e}");
    assert_eq!(c.endpoints().len(), 1);
    c.del(
        &cfg,
        Some(&r),
        Att {
            cid: "t1",
            netns: &ns,
            ifname: "eth0",
        },
    )
    .ok_empty();
    c.status(&cfg).ok_empty();
    // The bridge removed behind netloom's back: limited connectivity.
    let br = c
        .host_links()
        .into_iter()
        .find(|l| l.starts_with("nlbr-"))
        .unwrap();
    c.sh_ok(&format!("ip link del {br}"));
    c.status(&cfg).err(51);
    // STATUS is 1.1.0 only.
    for v in ["0.4.0", "1.0.0"] {
        c.status(&conf(v, "tiny", json!({ "subnets": ["10.77.0.0/30"] })))
            .err(1);
    }
}

#[test]
fn ranges_runtime_config_and_options_take_effect() {
    let Some(c) = Cni::host() else { return };
    let cfg = conf(
        "1.1.0",
        "ranged",
        json!({
            "mtu": 1400,
            "ipMasq": false,
            "isolate": false,
            "ipam": { "type": "netloom", "ranges": [[{
                "subnet": "10.66.0.0/24", "rangeStart": "10.66.0.100", "rangeEnd": "10.66.0.101"
            }]] },
            "dns": { "nameservers": ["10.66.0.1"] },
        }),
    );
    let n1 = c.netns("r1");
    let r1 = c
        .add(
            &cfg,
            Att {
                cid: "r1",
                netns: &n1,
                ifname: "eth0",
            },
        )
        .ok();
    assert_eq!(ips_of(&r1), ["10.66.0.100/24"]);
    assert_eq!(r1["interfaces"][1]["mtu"], 1400);
    assert_eq!(r1["dns"]["nameservers"][0], "10.66.0.1");
    let link = c.ip_json("r1", "link show dev eth0");
    assert_eq!(link[0]["mtu"], 1400);
    let net = c.netloom_json(&["network", "inspect", "ranged"]);
    assert_eq!(net["options"]["masquerade"], "false", "{net}");
    assert_eq!(net["options"]["isolate"], "false", "{net}");

    // runtimeConfig: a static address (outside the range) and a MAC.
    let mut rc = cfg.clone();
    rc["runtimeConfig"] = json!({ "ips": ["10.66.0.7/24"], "mac": "02:00:00:00:66:07" });
    let n2 = c.netns("r2");
    let r2 = c
        .add(
            &rc,
            Att {
                cid: "r2",
                netns: &n2,
                ifname: "eth0",
            },
        )
        .ok();
    assert_eq!(ips_of(&r2), ["10.66.0.7/24"]);
    assert_eq!(
        c.ip_json("r2", "link show dev eth0")[0]["address"],
        "02:00:00:00:66:07"
    );
    assert!(c.ping("r2", "10.66.0.100"));

    let n3 = c.netns("r3");
    let r3 = c
        .add(
            &cfg,
            Att {
                cid: "r3",
                netns: &n3,
                ifname: "eth0",
            },
        )
        .ok();
    assert_eq!(ips_of(&r3), ["10.66.0.101/24"]);
    // The range is used up.
    let n4 = c.netns("r4");
    let e = c
        .add(
            &cfg,
            Att {
                cid: "r4",
                netns: &n4,
                ifname: "eth0",
            },
        )
        .err(11);
    assert!(e["msg"].as_str().unwrap().contains("rangeStart"), "{e}");
    c.status(&cfg).err(50);
    c.assert_clean();
}

#[test]
fn an_existing_network_with_other_subnets_is_refused() {
    let Some(c) = Cni::host() else { return };
    let ns = c.netns("x");
    c.add(
        &web("1.1.0"),
        Att {
            cid: "x",
            netns: &ns,
            ifname: "eth0",
        },
    )
    .ok();
    let other = conf("1.1.0", "web", json!({ "subnets": ["10.99.0.0/24"] }));
    let before = c.networks();
    let e = c
        .add(
            &other,
            Att {
                cid: "y",
                netns: &ns,
                ifname: "eth1",
            },
        )
        .err(7);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("10.99.0.0/24") && msg.contains("10.88.0.0/24"),
        "{msg}"
    );
    assert_eq!(c.networks(), before);
    assert_eq!(c.endpoints().len(), 1);
    c.assert_clean();
}

#[test]
fn a_chained_prev_result_passes_through_and_is_extended() {
    let Some(c) = Cni::host() else { return };
    let prev = json!({
        "cniVersion": "1.1.0",
        "interfaces": [{ "name": "lo0", "mac": "00:00:00:00:00:00", "sandbox": "/somewhere", "socketPath": "/x.sock" }],
        "ips": [{ "address": "192.0.2.5/32", "interface": 0 }],
        "routes": [{ "dst": "192.0.2.0/24" }],
        "dns": { "domain": "example.test" },
    });
    let mut cfg = web("1.1.0");
    cfg["prevResult"] = prev.clone();
    let ns = c.netns("ch");
    let r = c
        .add(
            &cfg,
            Att {
                cid: "ch",
                netns: &ns,
                ifname: "eth0",
            },
        )
        .ok();
    let ifaces = r["interfaces"].as_array().unwrap();
    assert_eq!(ifaces[0], prev["interfaces"][0]);
    assert_eq!(r["ips"][0], prev["ips"][0]);
    let ours = ifaces.iter().position(|i| i["name"] == "eth0").unwrap();
    assert!(ours > 0);
    assert_eq!(r["ips"][1]["interface"], ours);
    assert_eq!(r["routes"][0], prev["routes"][0]);
    assert_eq!(r["dns"]["domain"], "example.test");
}

#[test]
fn bandwidth_limits_become_qdiscs_on_both_sides() {
    let Some(c) = Cni::host() else { return };
    let mut cfg = web("1.1.0");
    cfg["runtimeConfig"] = json!({ "bandwidth": {
        "ingressRate": 8_000_000, "ingressBurst": 800_000,
        "egressRate": 4_000_000, "egressBurst": 400_000,
    } });
    let ns = c.netns("bw");
    let r = c
        .add(
            &cfg,
            Att {
                cid: "bw",
                netns: &ns,
                ifname: "eth0",
            },
        )
        .ok();
    let host = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert!(host.starts_with("nlv-"), "{r}");
    let inside = c.sh_ok("ip netns exec bw tc qdisc show dev eth0");
    assert!(
        inside.contains("tbf"),
        "egress limit on the sandbox side: {inside}"
    );
    let outside = c.sh_ok(&format!("tc qdisc show dev {host}"));
    assert!(
        outside.contains("tbf"),
        "ingress limit on the host side: {outside}"
    );
    // A rate without its burst is refused before anything is made.
    let mut bad = web("1.1.0");
    bad["runtimeConfig"] = json!({ "bandwidth": { "ingressRate": 1000 } });
    let ns2 = c.netns("bw2");
    let e = c
        .add(
            &bad,
            Att {
                cid: "bw2",
                netns: &ns2,
                ifname: "eth0",
            },
        )
        .err(7);
    assert!(e["msg"].as_str().unwrap().contains("ingressBurst"), "{e}");
    assert_eq!(c.endpoints().len(), 1);
    c.del(
        &cfg,
        Some(&r),
        Att {
            cid: "bw",
            netns: &ns,
            ifname: "eth0",
        },
    )
    .ok_empty();
    c.assert_clean();
}
