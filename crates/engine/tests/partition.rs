//! Partitions of a lab, proven by traffic: in a throwaway host, a bridge
//! namespace with `br0` and five node namespaces on ports `n0`..`n4`
//! (172.18.0.1-5/24, the bridge 172.18.0.254), a TCP listener in every
//! node; after each partition the full TCP matrix, both directions, must
//! equal the expected one, and the kernel must read back the same.
//! Needs root.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netloom_engine::lab::partition::{self, Partition, Reachability, TABLE};
use netloom_engine::lab::{LabNode, LabView};
use netloom_kernel::{named_path, AddressOptions, IpPrefix, LinkSpec, MacAddr, Netlink, Netns};
use netloom_testhost::{host_or_skip, Host};

const PORT: u16 = 7000;
/// Longer than the kernel's ARP retransmission time (1 s): right after a
/// heal, a neighbour entry may still wait for its next ARP request.
const TIMEOUT: Duration = Duration::from_millis(1500);
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 254);
/// Set, so the bridge keeps it whatever ports join.
const GATEWAY_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);

/// The lab layout of seed 001, built with the kernel crate.
struct Lab {
    view: LabView,
    nodes: Vec<Netns>,
    node_paths: Vec<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl Lab {
    /// Builds the lab inside the current (host) namespaces. With
    /// `static_neighbours`, every node knows every other's MAC (and the
    /// bridge's), so no ARP is needed: for counting TCP handshakes alone,
    /// and because the kernel's IPv4 neighbour table is shared by all
    /// namespaces of the machine (gc_thresh3, 1024 by default): when other
    /// work fills it, dynamic entries cannot be made (ENOBUFS), while
    /// permanent ones are exempt.
    fn build(static_neighbours: bool) -> Lab {
        let bridge_ns = Netns::create_named("lab-bridge").expect("create bridge netns");
        let mut br = Netlink::open_in(&bridge_ns).expect("netlink in bridge netns");
        br.create_bridge(&LinkSpec::new("br0").mac(GATEWAY_MAC).up())
            .expect("create br0");
        let br0 = br.link_index("br0").unwrap();
        br.add_address(
            br0,
            IpPrefix::new(GATEWAY.into(), 24).unwrap(),
            AddressOptions::default(),
        )
        .unwrap();
        let lo = br.link_index("lo").unwrap();
        br.set_up(lo, true).unwrap();
        let mac = |i: usize| MacAddr([2, 0, 0, 0, 0, i as u8 + 1]);
        let ip = |i: usize| Ipv4Addr::new(172, 18, 0, i as u8 + 1);
        let mut nodes = Vec::new();
        let mut lab_nodes = Vec::new();
        let mut node_paths = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let ns_name = format!("lab-node-{name}");
            let ns = Netns::create_named(&ns_name).expect("create node netns");
            let port = format!("n{i}");
            br.create_veth(
                &LinkSpec::new(&port).master(br0).up(),
                &LinkSpec::new("eth0").mac(mac(i)).netns(&ns),
            )
            .expect("create veth");
            let mut inside = Netlink::open_in(&ns).unwrap();
            for link in ["lo", "eth0"] {
                let index = inside.link_index(link).unwrap();
                inside.set_up(index, true).unwrap();
            }
            let eth0 = inside.link_index("eth0").unwrap();
            inside
                .add_address(
                    eth0,
                    IpPrefix::new(ip(i).into(), 24).unwrap(),
                    AddressOptions::default(),
                )
                .unwrap();
            if static_neighbours {
                for j in (0..NAMES.len()).filter(|j| *j != i) {
                    inside.add_neighbour(eth0, ip(j).into(), mac(j)).unwrap();
                }
                inside
                    .add_neighbour(eth0, GATEWAY.into(), GATEWAY_MAC)
                    .unwrap();
            }
            lab_nodes.push(LabNode {
                name: name.to_string(),
                port,
                ipv4: ip(i),
                ipv6: None,
            });
            node_paths.push(named_path(&ns_name));
            nodes.push(ns);
        }
        if static_neighbours {
            for i in 0..NAMES.len() {
                br.add_neighbour(br0, ip(i).into(), mac(i)).unwrap();
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        for ns in nodes.iter().chain([&bridge_ns]) {
            let listener = ns
                .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)))
                .unwrap()
                .expect("bind listener");
            serve(listener, Arc::clone(&stop));
        }
        Lab {
            view: LabView {
                name: "t".into(),
                bridge_netns: named_path("lab-bridge"),
                nodes: lab_nodes,
            },
            nodes,
            node_paths,
            stop,
        }
    }

    fn probe(&self) -> Reachability {
        partition::probe(&self.view, &self.node_paths, PORT, TIMEOUT).expect("probe")
    }

    fn apply(&self, kind: &str, args: &[&str]) -> Reachability {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let p = Partition::parse(kind, &args).expect("parse");
        partition::apply(&self.view, &p).unwrap_or_else(|e| panic!("{kind} {args:?}: {e}"))
    }

    fn try_apply(&self, kind: &str, args: &[&str]) -> Result<Reachability, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Partition::parse(kind, &args)
            .and_then(|p| partition::apply(&self.view, &p))
            .map_err(|e| e.to_string())
    }

    /// Whether node `from` reaches the bridge's own address.
    fn reaches_gateway(&self, from: usize) -> bool {
        self.nodes[from]
            .run(|| TcpStream::connect_timeout(&SocketAddr::from((GATEWAY, PORT)), TIMEOUT).is_ok())
            .unwrap()
    }

    /// The partition table as nft prints it (empty without one).
    fn table_text(&self) -> String {
        let ns = Netns::open_path(&self.view.bridge_netns).unwrap();
        let out = ns
            .command("nft")
            .unwrap()
            .args(["list", "table", "bridge", TABLE])
            .output()
            .expect("run nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Asserts the measured matrix and the kernel's matrix both equal
    /// `expected` (as `+`/`-` rows in `NAMES` order; `.` on the diagonal).
    fn assert_matrix(&self, what: &str, expected: &[&str]) {
        let want = matrix(expected);
        let measured = self.probe();
        assert_eq!(
            measured.allowed, want.allowed,
            "{what}: measured\n{measured}\nexpected\n{want}"
        );
        let kernel = partition::current(&self.view).expect("current");
        assert_eq!(
            kernel.allowed, want.allowed,
            "{what}: kernel says\n{kernel}\nexpected\n{want}"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(listener: TcpListener, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => drop(conn),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
}

/// A matrix from rows like `".+-+-"`.
fn matrix(rows: &[&str]) -> Reachability {
    let mut r = Reachability::full_mesh(NAMES.iter().map(|s| s.to_string()).collect());
    for (i, row) in rows.iter().enumerate() {
        for (j, c) in row.chars().enumerate() {
            r.allowed[i][j] = c != '-';
        }
    }
    r
}

const FULL: [&str; 5] = [".++++", "+.+++", "++.++", "+++.+", "++++."];

/// Runs `body` on a fresh lab in a fresh throwaway host.
fn with_lab(static_neighbours: bool, body: impl FnOnce(&Lab) + Send) {
    let host: Host = host_or_skip!();
    host.enter(|| {
        let lab = Lab::build(static_neighbours);
        body(&lab);
    });
}

#[test]
fn no_table_is_a_full_mesh() {
    with_lab(true, |lab| {
        assert_eq!(lab.table_text(), "");
        lab.assert_matrix("fresh lab", &FULL);
        assert!(partition::current(&lab.view).unwrap().loss.is_empty());
    });
}

#[test]
fn isolate_cuts_nodes_off_both_ways_but_not_from_the_bridge() {
    with_lab(true, |lab| {
        let r = lab.apply("isolate", &["b", "d"]);
        let want = [".-+-+", "-.---", "+-.-+", "---.-", "+-+-."];
        assert_eq!(r.allowed, matrix(&want).allowed, "apply returned\n{r}");
        lab.assert_matrix("isolate b d", &want);
        assert!(
            lab.reaches_gateway(1),
            "isolated b must still reach the bridge"
        );
        assert!(lab.reaches_gateway(0));
        // A new isolate replaces the old one.
        lab.apply("isolate", &["e"]);
        lab.assert_matrix("isolate e", &[".+++-", "+.++-", "++.+-", "+++.-", "----."]);
    });
}

#[test]
fn split_with_overlapping_groups_isolates_unlisted_nodes() {
    with_lab(true, |lab| {
        // b and c are in both groups; a and d meet only through them; e is
        // in no group.
        lab.apply("split", &["a,b,c", "b,c,d"]);
        lab.assert_matrix(
            "split a,b,c b,c,d",
            &[".++--", "+.++-", "++.+-", "-++.-", "----."],
        );
    });
}

#[test]
fn disjoint_groups_talk_only_inside() {
    with_lab(true, |lab| {
        lab.apply("disjoint", &["a,c", "b,d,e"]);
        lab.assert_matrix(
            "disjoint a,c b,d,e",
            &[".-+--", "-.-++", "+-.--", "-+-.+", "-+-+."],
        );
    });
}

#[test]
fn heal_clears_cuts_and_loss() {
    with_lab(true, |lab| {
        lab.apply("disjoint", &["a,b", "c,d,e"]);
        lab.apply("loss", &["c", "100"]);
        lab.apply("loss", &["a", "40"]);
        let r = lab.apply("heal", &[]);
        assert!(r.loss.is_empty(), "heal left loss: {:?}", r.loss);
        lab.assert_matrix("heal", &FULL);
        // Healing a healed lab is fine too.
        lab.apply("heal", &[]);
        lab.assert_matrix("heal again", &FULL);
    });
}

#[test]
fn loss_100_cuts_a_node_until_set_to_0_and_cuts_stay() {
    with_lab(true, |lab| {
        lab.apply("isolate", &["e"]);
        let r = lab.apply("loss", &["a", "100%"]);
        assert_eq!(r.loss, BTreeMap::from([("a".to_string(), 100)]));
        lab.assert_matrix("loss a 100", &[".----", "-.++-", "-+.+-", "-++.-", "----."]);
        // Loss changes leave the cuts alone, and cuts leave loss alone.
        lab.apply("isolate", &["d"]);
        lab.assert_matrix(
            "isolate d with loss a 100",
            &[".----", "-.+-+", "-+.-+", "---.-", "-++-."],
        );
        let r = lab.apply("loss", &["a", "0"]);
        assert!(r.loss.is_empty());
        lab.assert_matrix("loss a 0", &[".++-+", "+.+-+", "++.-+", "---.-", "+++-."]);
    });
}

#[test]
fn loss_50_drops_frames_both_ways_at_random() {
    with_lab(true, |lab| {
        let r = lab.apply("loss", &["a", "50"]);
        assert_eq!(r.loss, BTreeMap::from([("a".to_string(), 50)]));
        assert!(
            r.allowed.iter().flatten().all(|x| *x),
            "50% loss is not a cut:\n{r}"
        );
        assert_eq!(partition::current(&lab.view).unwrap(), r);
        // A handshake needs the SYN to reach a and the SYN-ACK to leave
        // it: each passes with probability 1/2, so about 1/4 of the
        // connects succeed within a timeout shorter than the SYN
        // retransmission (1 s). 240 tries: mean 60, sd 6.7.
        let target = SocketAddr::from((lab.view.nodes[0].ipv4, PORT));
        let tries = 240;
        let ok = count_connects(&lab.nodes[1], target, tries);
        assert!(
            (33..=87).contains(&ok),
            "{ok} of {tries} connects b -> a passed; expected about {}",
            tries / 4
        );
        // And the other direction, from the lossy node.
        let back = SocketAddr::from((lab.view.nodes[1].ipv4, PORT));
        let ok = count_connects(&lab.nodes[0], back, tries);
        assert!(
            (33..=87).contains(&ok),
            "{ok} of {tries} connects a -> b passed"
        );
        // Nodes without loss are untouched.
        let other = SocketAddr::from((lab.view.nodes[2].ipv4, PORT));
        assert_eq!(count_connects(&lab.nodes[1], other, 40), 40);
    });
}

/// Connects from `ns` to `target` `tries` times, 24 at a time, each with a
/// 300 ms timeout; returns how many succeeded.
fn count_connects(ns: &Netns, target: SocketAddr, tries: usize) -> usize {
    ns.run(|| {
        let ok = std::sync::atomic::AtomicUsize::new(0);
        for round in 0..tries.div_ceil(24) {
            std::thread::scope(|s| {
                for _ in 0..24.min(tries - round * 24) {
                    s.spawn(|| {
                        if TcpStream::connect_timeout(&target, Duration::from_millis(300)).is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
        }
        ok.into_inner()
    })
    .unwrap()
}

#[test]
fn applying_the_same_partition_again_changes_nothing() {
    with_lab(true, |lab| {
        let first = lab.apply("split", &["a,b", "b,c,d"]);
        lab.apply("loss", &["e", "30"]);
        let text = lab.table_text();
        assert!(
            text.contains("\"n0\" . \"n2\""),
            "cut pairs expected in\n{text}"
        );
        let again = lab.apply("split", &["a,b", "b,c,d"]);
        lab.apply("loss", &["e", "30"]);
        assert_eq!(lab.table_text(), text, "second apply changed the table");
        assert_eq!(first.allowed, again.allowed);
        assert_eq!(again.loss, BTreeMap::from([("e".to_string(), 30)]));
        lab.assert_matrix(
            "split a,b b,c,d twice",
            &[".+---", "+.++-", "-+.+-", "-++.-", "----."],
        );
    });
}

#[test]
fn refused_partitions_leave_the_kernel_as_it_was() {
    with_lab(true, |lab| {
        // Refused before any table exists: none is made.
        let err = lab.try_apply("isolate", &["zz"]).unwrap_err();
        assert!(
            err.contains("has no node \"zz\"; its nodes are: a, b, c, d, e"),
            "{err}"
        );
        assert_eq!(lab.table_text(), "");
        let want = [".-+++", "-.+++", "++.++", "+++.+", "++++."];
        lab.apply("split", &["a,c,d,e", "b,c,d,e"]);
        let text = lab.table_text();
        let err = lab.try_apply("disjoint", &["a,b", "c,d"]).unwrap_err();
        assert!(err.contains("but e is in no group"), "{err}");
        let err = lab.try_apply("disjoint", &["a,b", "b,c,d,e"]).unwrap_err();
        assert!(
            err.contains("node \"b\" is in group \"a,b\" and in group"),
            "{err}"
        );
        let err = lab.try_apply("loss", &["q", "10"]).unwrap_err();
        assert!(err.contains("has no node \"q\""), "{err}");
        assert_eq!(lab.table_text(), text);
        lab.assert_matrix("after refused partitions", &want);
    });
}

#[test]
fn cuts_stop_arp_too() {
    // Dynamic neighbours: a must resolve b's and c's MAC by ARP.
    with_lab(false, |lab| {
        lab.apply("isolate", &["b"]);
        let c = SocketAddr::from((lab.view.nodes[2].ipv4, PORT));
        let b = SocketAddr::from((lab.view.nodes[1].ipv4, PORT));
        let reach = |to: SocketAddr| {
            lab.nodes[0]
                .run(|| TcpStream::connect_timeout(&to, TIMEOUT).map_err(|e| e.to_string()))
                .unwrap()
        };
        if let Err(e) = reach(c) {
            panic!("a -> c must pass (ARP through the bridge): {e}; if this says \"No buffer space\", the machine's shared neighbour table is full");
        }
        assert!(reach(b).is_err(), "a -> b must be cut");
        let out = lab.nodes[0]
            .command("ip")
            .unwrap()
            .args(["-4", "neigh", "show", "dev", "eth0"])
            .output()
            .unwrap();
        let neigh = String::from_utf8_lossy(&out.stdout);
        let line_b = neigh
            .lines()
            .find(|l| l.starts_with("172.18.0.2 "))
            .unwrap_or("");
        assert!(
            !line_b.contains("lladdr"),
            "ARP for b was answered through the cut:\n{neigh}"
        );
        assert!(
            neigh
                .lines()
                .any(|l| l.starts_with("172.18.0.3 ") && l.contains("lladdr")),
            "a never learned c's MAC:\n{neigh}"
        );
        lab.apply("heal", &[]);
        assert!(partition::probe(&lab.view, &lab.node_paths, PORT, TIMEOUT)
            .unwrap()
            .allowed
            .iter()
            .flatten()
            .all(|x| *x));
    });
}
