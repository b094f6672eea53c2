use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::*;
use crate::lab::{LabNode, LabView};

fn view(names: &[&str]) -> LabView {
    LabView {
        name: "t".into(),
        bridge_netns: PathBuf::from("/nonexistent"),
        nodes: names
            .iter()
            .enumerate()
            .map(|(i, name)| LabNode {
                name: name.to_string(),
                port: format!("n{i}"),
                ipv4: Ipv4Addr::new(172, 18, 0, i as u8 + 1),
                ipv6: None,
            })
            .collect(),
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn parse(kind: &str, list: &[&str]) -> Result<Partition, String> {
    Partition::parse(kind, &args(list)).map_err(|e| e.to_string())
}

#[test]
fn parses_every_kind() {
    assert_eq!(parse("heal", &[]).unwrap(), Partition::Heal);
    assert_eq!(
        parse("isolate", &["a", "b"]).unwrap(),
        Partition::Isolate(args(&["a", "b"]))
    );
    assert_eq!(
        parse("split", &["a,b", "b,c"]).unwrap(),
        Partition::Split(vec![args(&["a", "b"]), args(&["b", "c"])])
    );
    assert_eq!(
        parse("disjoint", &["a,b", "c"]).unwrap(),
        Partition::Disjoint(vec![args(&["a", "b"]), args(&["c"])])
    );
    assert_eq!(
        parse("loss", &["a", "30%"]).unwrap(),
        Partition::Loss {
            node: "a".into(),
            percent: 30
        }
    );
    assert_eq!(
        parse("loss", &["a", "0"]).unwrap(),
        Partition::Loss {
            node: "a".into(),
            percent: 0
        }
    );
}

#[test]
fn bad_arguments_are_named_with_the_grammar() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("heal", &["x"], "takes no arguments, got \"x\""),
        ("isolate", &[], "needs at least one NODE"),
        ("isolate", &["a", "a"], "node \"a\" is listed twice"),
        ("split", &["a,,b"], "group \"a,,b\" has an empty"),
        ("split", &["a,a"], "lists node \"a\" twice"),
        (
            "disjoint",
            &["a,b", "b,c"],
            "node \"b\" is in group \"a,b\" and in group \"b,c\"",
        ),
        ("loss", &["a"], "needs NODE and PERCENT"),
        (
            "loss",
            &["a", "101"],
            "PERCENT \"101\" is not a whole number from 0 to 100",
        ),
        ("loss", &["a", "x"], "PERCENT \"x\""),
        (
            "shuffle",
            &[],
            "partition: kind \"shuffle\" is not one of isolate",
        ),
    ];
    for (kind, list, want) in cases {
        let err = parse(kind, list).unwrap_err();
        assert!(err.contains(want), "{kind} {list:?}: {err}");
        assert!(
            err.contains("split GROUP GROUP..."),
            "{kind}: no grammar in {err}"
        );
    }
}

#[test]
fn matrices_follow_the_kinds() {
    let v = view(&["a", "b", "c", "d"]);
    let m = |kind: &str, list: &[&str]| {
        cut_matrix(&v, &Partition::parse(kind, &args(list)).unwrap())
            .unwrap()
            .unwrap()
    };
    let t = true;
    let f = false;
    assert_eq!(
        m("isolate", &["b"]),
        vec![
            vec![t, f, t, t],
            vec![f, t, f, f],
            vec![t, f, t, t],
            vec![t, f, t, t]
        ]
    );
    // Overlapping groups: b talks to a and c, a and c do not talk; d is in no group.
    assert_eq!(
        m("split", &["a,b", "b,c"]),
        vec![
            vec![t, t, f, f],
            vec![t, t, t, f],
            vec![f, t, t, f],
            vec![f, f, f, t]
        ]
    );
    assert_eq!(
        m("disjoint", &["a,c", "b,d"]),
        vec![
            vec![t, f, t, f],
            vec![f, t, f, t],
            vec![t, f, t, f],
            vec![f, t, f, t]
        ]
    );
    assert_eq!(m("heal", &[]), vec![vec![t; 4]; 4]);
}

#[test]
fn unknown_nodes_and_missing_disjoint_nodes_are_refused() {
    let v = view(&["a", "b", "c"]);
    let err = cut_matrix(&v, &Partition::Isolate(args(&["zz"])))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lab \"t\": has no node \"zz\"; its nodes are: a, b, c"),
        "{err}"
    );
    let err = cut_matrix(&v, &Partition::Disjoint(vec![args(&["a"]), args(&["b"])]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("but c is in no group"), "{err}");
    let err = apply(
        &v,
        &Partition::Loss {
            node: "q".into(),
            percent: 5,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("has no node \"q\""), "{err}");
}

#[test]
fn display_is_a_readable_matrix() {
    let mut r = Reachability::full_mesh(args(&["a", "bb", "c"]));
    r.allowed[0][2] = false;
    r.allowed[2][0] = false;
    r.loss.insert("bb".into(), 30);
    let text = r.to_string();
    assert_eq!(
        text,
        "from\\to  a  bb  c\na        .  +   -\nbb       +  .   +\nc        -  +   .\nloss: bb 30%"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["allowed"][0][2], false);
    assert_eq!(json["loss"]["bb"], 30);
    assert_eq!(
        r.differences(&Reachability::full_mesh(args(&["a", "bb", "c"])))
            .len(),
        2
    );
}
