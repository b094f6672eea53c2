//! Refusals: the spec's error object on stdout with the right code, a
//! message naming the bad field or value, a non-zero exit, and nothing
//! changed in the store or the kernel. VERSION's report.

mod cni_support;
use cni_support::{conf, Att, Cni, VERSIONS};
use serde_json::json;

/// What a refusal must not have changed.
fn snapshot(c: &Cni) -> (Vec<serde_json::Value>, Vec<String>) {
    let links = c
        .host_links()
        .into_iter()
        .filter(|l| l.starts_with("nl"))
        .collect();
    (c.networks(), links)
}

#[test]
fn version_lists_every_supported_version() {
    let c = Cni::machine("version");
    for v in VERSIONS {
        let r = c
            .run(
                "VERSION",
                &[],
                json!({ "cniVersion": v }).to_string().as_bytes(),
            )
            .ok();
        assert_eq!(r["cniVersion"], *v);
        assert_eq!(r["supportedVersions"], json!(VERSIONS));
    }
    // Without a config, the newest.
    let r = c.run("VERSION", &[], b"").ok();
    assert_eq!(r["cniVersion"], "1.1.0");
}

#[test]
fn refusals_carry_the_right_code_and_change_nothing() {
    let Some(c) = Cni::host() else { return };
    let ns = c.netns("e");
    let att = Att {
        cid: "e",
        netns: &ns,
        ifname: "eth0",
    };
    let good = conf("1.1.0", "web", json!({ "subnets": ["10.88.0.0/24"] }));
    // A network that exists, so the checks run against real state.
    c.add(
        &good,
        Att {
            cid: "keep",
            netns: &ns,
            ifname: "eth9",
        },
    )
    .ok();
    let before = snapshot(&c);
    let eps = c.endpoints();

    let cases: Vec<(serde_json::Value, u64, &str)> = vec![
        (json!("not json"), 6, "not JSON"),
        (json!([1, 2]), 6, "not a JSON object"),
        (
            conf("0.2.0", "web", json!({ "subnets": ["10.88.0.0/24"] })),
            1,
            "0.2.0",
        ),
        (
            json!({ "name": "web", "type": "netloom", "subnets": ["10.88.0.0/24"] }),
            1,
            "cniVersion",
        ),
        (
            conf("1.1.0", "bad/name", json!({ "subnets": ["10.88.0.0/24"] })),
            7,
            "bad/name",
        ),
        (conf("1.1.0", "web2", json!({})), 7, "no subnet"),
        (
            conf("1.1.0", "web2", json!({ "subnets": ["10.89.0.1/24"] })),
            7,
            "10.89.0.1/24",
        ),
        (
            conf(
                "1.1.0",
                "web2",
                json!({ "subnets": ["10.89.0.0/24"], "driver": "vxlan" }),
            ),
            7,
            "vxlan",
        ),
        (
            conf(
                "1.1.0",
                "web2",
                json!({ "subnets": ["10.89.0.0/24"], "mtu": 20 }),
            ),
            7,
            "mtu",
        ),
        (
            conf(
                "1.1.0",
                "web2",
                json!({ "subnets": ["10.89.0.0/24"], "ipMasq": "no" }),
            ),
            7,
            "ipMasq",
        ),
        (
            conf(
                "1.1.0",
                "web2",
                json!({ "subnets": ["10.89.0.0/24"], "gateway": "10.1.1.1" }),
            ),
            7,
            "10.1.1.1",
        ),
        (
            conf("1.1.0", "web2", json!({ "subnets": ["10.88.0.0/16"] })),
            7,
            "overlaps",
        ),
        (
            conf(
                "1.1.0",
                "web2",
                json!({ "subnets": ["10.89.0.0/24"], "ipam": { "type": "host-local" } }),
            ),
            7,
            "host-local",
        ),
        (
            conf(
                "1.1.0",
                "web",
                json!({ "subnets": ["10.88.0.0/24"], "runtimeConfig": { "ips": ["10.99.0.5"] } }),
            ),
            7,
            "10.99.0.5",
        ),
        (
            conf(
                "1.1.0",
                "web",
                json!({ "subnets": ["10.88.0.0/24"], "runtimeConfig": { "mac": "01:00:5e:00:00:01" } }),
            ),
            7,
            "01:00:5e:00:00:01",
        ),
        (
            conf(
                "1.1.0",
                "web",
                json!({ "subnets": ["10.88.0.0/24"], "runtimeConfig": { "portMappings": [{ "hostPort": 0, "containerPort": 80 }] } }),
            ),
            7,
            "hostPort",
        ),
        (
            conf(
                "1.1.0",
                "web",
                json!({ "subnets": ["10.88.0.0/24"], "isGateway": false }),
            ),
            7,
            "gateway",
        ),
    ];
    for (cfg, code, needle) in &cases {
        let stdin = match cfg {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            v => v.to_string().into_bytes(),
        };
        let out = c.run(
            "ADD",
            &[
                ("CNI_CONTAINERID", "e"),
                ("CNI_NETNS", &ns),
                ("CNI_IFNAME", "eth0"),
            ],
            &stdin,
        );
        let e = out.err(*code);
        assert!(
            e["msg"].as_str().unwrap().contains(needle),
            "{cfg}: expected {needle:?} in {e}"
        );
        assert_eq!(out.code, Some(1));
        assert_eq!(snapshot(&c), before, "{cfg} changed state");
        assert_eq!(c.endpoints(), eps, "{cfg} changed endpoints");
    }
    // The error object speaks the config's version.
    let out = c.add(&conf("0.4.0", "web2", json!({})), att);
    assert_eq!(out.err(7)["cniVersion"], "0.4.0");

    // Environment: missing or malformed variables are code 4.
    let body = good.to_string();
    for (vars, needle) in [
        (
            vec![("CNI_NETNS", ns.as_str()), ("CNI_IFNAME", "eth0")],
            "CNI_CONTAINERID",
        ),
        (
            vec![("CNI_CONTAINERID", "e"), ("CNI_IFNAME", "eth0")],
            "CNI_NETNS",
        ),
        (
            vec![("CNI_CONTAINERID", "e"), ("CNI_NETNS", ns.as_str())],
            "CNI_IFNAME",
        ),
        (
            vec![
                ("CNI_CONTAINERID", "e"),
                ("CNI_NETNS", "/run/netns/nosuch"),
                ("CNI_IFNAME", "eth0"),
            ],
            "/run/netns/nosuch",
        ),
        (
            vec![
                ("CNI_CONTAINERID", "e/x"),
                ("CNI_NETNS", ns.as_str()),
                ("CNI_IFNAME", "eth0"),
            ],
            "e/x",
        ),
        (
            vec![
                ("CNI_CONTAINERID", "e"),
                ("CNI_NETNS", ns.as_str()),
                ("CNI_IFNAME", "averyveryverylongname"),
            ],
            "averyveryverylongname",
        ),
        (
            vec![
                ("CNI_CONTAINERID", "e"),
                ("CNI_NETNS", ns.as_str()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "garbage"),
            ],
            "CNI_ARGS",
        ),
    ] {
        let e = c.run("ADD", &vars, body.as_bytes()).err(4);
        assert!(e["msg"].as_str().unwrap().contains(needle), "{vars:?}: {e}");
        assert_eq!(snapshot(&c), before);
    }
    let e = c.run("FROB", &[], body.as_bytes()).err(4);
    assert!(e["msg"].as_str().unwrap().contains("FROB"), "{e}");
    // DEL needs the container and interface too.
    c.run("DEL", &[("CNI_IFNAME", "eth0")], body.as_bytes())
        .err(4);
    assert_eq!(c.endpoints(), eps);
    c.assert_clean();
}
