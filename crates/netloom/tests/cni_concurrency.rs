//! 64 plugin processes at once: ADD for 64 containers (64 namespaces) on
//! one bridge network that none of them finds existing, then every sandbox
//! pings every other, then 64 DELs at once. Addresses distinct, full
//! reachability, nothing left behind.

mod cni_support;
use cni_support::{bare, conf, ips_of, Att, Cni};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Instant;

const N: usize = 64;

#[test]
fn sixty_four_parallel_adds_and_dels() {
    let Some(c) = Cni::host() else { return };
    let cfg = conf("1.1.0", "swarm", json!({ "subnets": ["10.55.0.0/24"] }));
    let names: Vec<String> = (0..N).map(|i| format!("s{i}")).collect();
    c.sh_ok(
        &names
            .iter()
            .map(|n| format!("ip netns add {n}"))
            .collect::<Vec<_>>()
            .join(" && "),
    );

    let started = Instant::now();
    let results: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| {
                let (c, cfg) = (&c, &cfg);
                s.spawn(move || {
                    let ns = format!("/run/netns/{n}");
                    c.add(
                        cfg,
                        Att {
                            cid: n,
                            netns: &ns,
                            ifname: "eth0",
                        },
                    )
                    .ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("{N} parallel ADDs: {:?}", started.elapsed());
    assert_eq!(c.networks().len(), 1, "one network, created once");
    let addrs: Vec<String> = results.iter().map(|r| ips_of(r)[0].clone()).collect();
    let distinct: BTreeSet<&String> = addrs.iter().collect();
    assert_eq!(
        distinct.len(),
        N,
        "an address was handed out twice: {addrs:?}"
    );
    for (n, a) in names.iter().zip(&addrs) {
        assert_eq!(c.addrs(n, "eth0"), std::slice::from_ref(a), "{n}");
    }

    // Every sandbox reaches every other. The kernel's ARP table is shared
    // by all namespaces and capped (gc_thresh3, 1024 entries by default),
    // fewer than a full mesh of 64 needs (64 x 63), so the sources go in
    // waves of four (each wave: 4 shells at once, each pinging the 63
    // others), and the sandboxes' neighbour tables are flushed between waves.
    let targets: Vec<&str> = addrs.iter().map(|a| bare(a)).collect();
    let flush: String = names
        .iter()
        .map(|n| format!("ip -n {n} neigh flush all"))
        .collect::<Vec<_>>()
        .join("; ");
    let script: String = names
        .chunks(4)
        .enumerate()
        .map(|(w, wave)| {
            let shells: Vec<String> = wave
                .iter()
                .enumerate()
                .map(|(k, n)| {
                    let i = w * 4 + k;
                    let others: Vec<&str> = targets
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, t)| *t)
                        .collect();
                    format!(
                        "ip netns exec {n} sh -c 'for t in {}; do ping -c1 -W3 -q $t >/dev/null 2>&1 || echo \"{n} $t\"; done' > /run/ping-{n} &",
                        others.join(" ")
                    )
                })
                .collect();
            format!("{}\nwait\n{flush}", shells.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\ncat /run/ping-*";
    let started = Instant::now();
    let first = c.sh_ok(&script);
    eprintln!("{} pings: {:?}", N * (N - 1), started.elapsed());
    // A pair that missed under the load of 64 shells gets a second,
    // unhurried try; a pair that cannot reach each other fails both.
    let failed: Vec<&str> = first
        .lines()
        .filter(|l| {
            let (from, to) = l.split_once(' ').unwrap();
            !c.ping(from, to)
        })
        .collect();
    eprintln!(
        "missed under load: {}, unreachable: {}",
        first.lines().count(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "pairs that did not reach each other: {failed:?}"
    );
    c.assert_clean();

    let started = Instant::now();
    std::thread::scope(|s| {
        for (n, r) in names.iter().zip(&results) {
            let (c, cfg) = (&c, &cfg);
            s.spawn(move || {
                let ns = format!("/run/netns/{n}");
                c.del(
                    cfg,
                    Some(r),
                    Att {
                        cid: n,
                        netns: &ns,
                        ifname: "eth0",
                    },
                )
                .ok_empty();
            });
        }
    });
    eprintln!("{N} parallel DELs: {:?}", started.elapsed());
    assert!(c.endpoints().is_empty());
    assert!(!c.host_links().iter().any(|l| l.starts_with("nlv-")));
    let held: Vec<serde_json::Value> = c
        .allocations("swarm")
        .into_iter()
        .filter(|a| a["owner"]["kind"] == "endpoint")
        .collect();
    assert!(held.is_empty(), "{held:?}");
    c.assert_clean();
}
