//! `netloom partition` on a real lab (`netloom lab up`), from the host and
//! from a test driver inside the lab's bridge namespace (`lab exec
//! --bridge`, which sets NETLOOM_LAB). Reachability is measured with
//! `show --probe`: TCP connects between every pair of nodes (a refused
//! connect proves the path, so no listeners are needed). Needs root.

mod support;

use serde_json::Value;
use support::World;

const NODES: [&str; 4] = ["a", "b", "c", "d"];

fn lab() -> Option<World> {
    let w = World::new()?;
    let mut file = String::from("name = \"t\"\n");
    for n in NODES {
        file.push_str(&format!("[[node]]\nname = \"{n}\"\n"));
    }
    w.sh_ok(&format!("cat > /run/t.toml <<'EOF'\n{file}EOF"));
    w.ok(&["lab", "up", "/run/t.toml"]);
    pin_neighbours(&w);
    Some(w)
}

/// Makes every node's neighbours (and the bridge's) permanent entries.
/// The kernel's IPv4 neighbour table is shared by every namespace of the
/// machine (gc_thresh3, 1024 by default); when other work fills it, new
/// dynamic entries fail with ENOBUFS, while permanent ones are exempt. The
/// engine's partition tests cover ARP itself.
fn pin_neighbours(w: &World) {
    let nodes = NODES.join(" ");
    w.sh_ok(&format!(
        r#"set -e
for x in {nodes}; do
  eval "mac_$x=$(ip -n nlab-t:$x -br link show eth0 | awk '{{print $3}}')"
  eval "ip_$x=$(ip -n nlab-t:$x -4 -br addr show eth0 | awk '{{print $3}}' | cut -d/ -f1)"
done
gw=$(ip -n nlab-t -4 -br addr show br0 | awk '{{print $3}}' | cut -d/ -f1)
gwmac=$(ip -n nlab-t -br link show br0 | awk '{{print $3}}')
for x in {nodes}; do
  eval "mx=\$mac_$x ix=\$ip_$x"
  ip -n nlab-t neigh replace "$ix" lladdr "$mx" dev br0 nud permanent
  ip -n nlab-t:$x neigh replace "$gw" lladdr "$gwmac" dev eth0 nud permanent
  for y in {nodes}; do
    [ "$x" = "$y" ] && continue
    eval "my=\$mac_$y iy=\$ip_$y"
    ip -n nlab-t:$x neigh replace "$iy" lladdr "$my" dev eth0 nud permanent
  done
done"#
    ));
}

/// `allowed` of a JSON matrix, checking its node order.
fn allowed(v: &Value) -> Vec<Vec<bool>> {
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes in {v}"))
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(nodes, NODES, "{v}");
    serde_json::from_value(v["allowed"].clone()).unwrap()
}

/// A matrix from rows like `".+-+"`.
fn matrix(rows: &[&str]) -> Vec<Vec<bool>> {
    rows.iter()
        .map(|r| r.chars().map(|c| c != '-').collect())
        .collect()
}

/// The measured and the recorded matrix both equal `rows`.
fn assert_reach(w: &World, what: &str, rows: &[&str]) {
    let want = matrix(rows);
    let measured = w.json(&["partition", "t", "show", "--probe", "9", "--timeout", "1.5"]);
    assert_eq!(measured["measured"], true);
    assert_eq!(allowed(&measured), want, "{what}: measured {measured}");
    let kernel = w.json(&["partition", "t", "show"]);
    assert_eq!(kernel["measured"], false);
    assert_eq!(allowed(&kernel), want, "{what}: rules say {kernel}");
}

const FULL: [&str; 4] = [".+++", "+.++", "++.+", "+++."];

#[test]
fn partitions_from_the_host() {
    let Some(w) = lab() else { return };
    assert_reach(&w, "fresh lab", &FULL);

    let split = w.json(&["partition", "t", "split", "a,b", "b,c"]);
    assert_eq!(split["lab"], "t");
    let want = [".+--", "+.+-", "-+.-", "---."];
    assert_eq!(allowed(&split), matrix(&want));
    assert_reach(&w, "split a,b b,c", &want);

    let text = w.ok(&["partition", "t", "isolate", "c"]);
    assert!(text.starts_with("from\\to  a  b  c  d\n"), "{text}");
    assert!(text.contains("\nc        -  -  .  -\n"), "{text}");
    assert_reach(&w, "isolate c", &[".+-+", "+.-+", "--.-", "++-."]);

    let loss = w.json(&["partition", "t", "loss", "d", "100"]);
    assert_eq!(loss["loss"]["d"], 100);
    assert_reach(
        &w,
        "isolate c, loss d 100",
        &[".+--", "+.--", "--.-", "---."],
    );

    // Refused partitions change nothing.
    let err = w.fails(&["partition", "t", "disjoint", "a,b", "c"]);
    assert!(err.contains("but d is in no group"), "{err}");
    let err = w.fails(&["partition", "t", "isolate", "zz"]);
    assert!(
        err.contains("has no node \"zz\"; its nodes are: a, b, c, d"),
        "{err}"
    );
    let err = w.fails(&["partition", "t", "split", "a b"]);
    assert!(
        err.contains("usage: netloom partition [LAB] KIND ARGS..."),
        "{err}"
    );
    let err = w.fails(&["partition", "nosuchlab", "heal"]);
    assert!(err.contains("nosuchlab"), "{err}");
    assert_reach(&w, "after refusals", &[".+--", "+.--", "--.-", "---."]);

    let healed = w.json(&["partition", "t", "heal"]);
    assert_eq!(healed["loss"], serde_json::json!({}));
    assert_reach(&w, "heal", &FULL);
    w.ok(&["lab", "down", "t"]);
    let out = w.sh("ip netns list | grep -c nlab-t");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

#[test]
fn partitions_from_a_driver_in_the_bridge_namespace() {
    let Some(w) = lab() else { return };
    let bin = env!("CARGO_BIN_EXE_netloom");
    // The lab comes from NETLOOM_LAB, set by `lab exec`.
    let out = w.ok(&[
        "lab",
        "exec",
        "t",
        "--bridge",
        "--",
        bin,
        "partition",
        "disjoint",
        "a,d",
        "b,c",
    ]);
    assert!(out.contains("from\\to"), "{out}");
    let want = [".--+", "-.+-", "-+.-", "+--."];
    assert_reach(&w, "disjoint a,d b,c from the bridge", &want);
    // Show and probe from inside too.
    let shown = w.ok(&[
        "lab",
        "exec",
        "t",
        "--bridge",
        "--",
        bin,
        "--json",
        "partition",
        "show",
        "--probe",
        "9",
        "--timeout",
        "1.5",
    ]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["lab"], "t");
    assert_eq!(allowed(&shown), matrix(&want));
    // The driver's own errors are clear too.
    let out = w.netloom(&[
        "lab",
        "exec",
        "t",
        "--bridge",
        "--",
        bin,
        "partition",
        "disjoint",
        "a,b,c,d",
        "a",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node \"a\" is in group \"a,b,c,d\" and in group \"a\""),
        "{err}"
    );
    let out = w.ok(&[
        "lab",
        "exec",
        "t",
        "--bridge",
        "--",
        bin,
        "partition",
        "heal",
    ]);
    assert!(out.contains("loss: none"), "{out}");
    assert_reach(&w, "heal from the bridge", &FULL);
    w.ok(&["lab", "down", "t"]);
}
