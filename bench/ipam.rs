//! IPAM benchmark (not a test): how long one allocation takes
//!
//! 1. in-process, through the engine, on a network already holding 60,000
//!    allocated addresses, for both policies (target: median <= 50 us);
//! 2. as a whole `netloom ipam allocate` process on that network, state on
//!    tmpfs (target: median <= 3 ms);
//! 3. beside it, in the same run, the CNI reference IPAM plugin `host-local`
//!    doing ADD as a process, if installed (/usr/lib/cni/host-local).
//!
//! Usage: bench-ipam NETLOOM_BINARY [--json FILE]
//! Prints medians, p90s and ratios, then one JSON object.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netloom_engine::model::{NetworkRequest, Policy};
use netloom_engine::Engine;
use serde_json::json;

const HELD: usize = 60_000;
const IN_PROCESS_SAMPLES: usize = 3_000;
const PROCESS_SAMPLES: usize = 300;

struct Stats {
    median: Duration,
    p90: Duration,
    n: usize,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        median: v[v.len() / 2],
        p90: v[v.len() * 9 / 10],
        n: v.len(),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn fresh_dir(tag: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = PathBuf::from(base).join(format!("netloom-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A network holding HELD allocations; returns its state directory.
fn filled(policy: Policy) -> PathBuf {
    let dir = fresh_dir(&format!("{policy}"));
    let mut engine = Engine::open(&dir).unwrap();
    engine
        .create_network(&NetworkRequest {
            name: "big".into(),
            driver: "null".into(),
            subnets: vec!["10.40.0.0/16".into()],
            ipam_policy: policy,
            ..Default::default()
        })
        .unwrap();
    for i in 0..HELD {
        engine.allocate("big", &format!("fill{i}"), &[]).unwrap();
    }
    dir
}

/// Allocate (timed), then release (untimed) so the network keeps holding HELD.
fn in_process(dir: &Path) -> Stats {
    let mut engine = Engine::open(dir).unwrap();
    let mut samples = Vec::with_capacity(IN_PROCESS_SAMPLES);
    for i in 0..IN_PROCESS_SAMPLES {
        let owner = format!("b{i}");
        let t = Instant::now();
        let lease = engine.allocate("big", &owner, &[]).unwrap();
        samples.push(t.elapsed());
        assert_eq!(lease.len(), 1);
        engine.release("big", &owner).unwrap();
    }
    assert!(
        engine.check().unwrap().is_empty(),
        "invariants broken by the benchmark"
    );
    stats(samples)
}

fn process(netloom: &Path, dir: &Path) -> Stats {
    let mut samples = Vec::with_capacity(PROCESS_SAMPLES);
    for i in 0..PROCESS_SAMPLES {
        let t = Instant::now();
        let st = Command::new(netloom)
            .env("NETLOOM_STATE_DIR", dir)
            .args(["ipam", "allocate", "big", "--owner", &format!("p{i}")])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        samples.push(t.elapsed());
        assert!(st.success(), "netloom ipam allocate failed");
    }
    stats(samples)
}

fn host_local(plugin: &Path) -> Stats {
    let data = fresh_dir("host-local");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "bench",
        "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.41.0.0/16" }]], "dataDir": data },
    })
    .to_string();
    let mut samples = Vec::with_capacity(PROCESS_SAMPLES);
    for i in 0..PROCESS_SAMPLES {
        let t = Instant::now();
        let mut child = Command::new(plugin)
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", format!("c{i}"))
            .env("CNI_NETNS", "/proc/self/ns/net")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", plugin.parent().unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        let st = child.wait().unwrap();
        samples.push(t.elapsed());
        assert!(st.success(), "host-local ADD failed");
    }
    let _ = std::fs::remove_dir_all(&data);
    stats(samples)
}

fn line(name: &str, s: &Stats) {
    println!(
        "{name:<58} median {:>9.1} us   p90 {:>9.1} us   (n={})",
        us(s.median),
        us(s.p90),
        s.n
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let netloom = PathBuf::from(
        args.get(1)
            .expect("usage: bench-ipam NETLOOM_BINARY [--json FILE]"),
    );
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);

    println!("filling two /16 networks with {HELD} addresses each ...");
    let seq_dir = filled(Policy::Sequential);
    let low_dir = filled(Policy::Lowest);
    let seq = in_process(&seq_dir);
    let low = in_process(&low_dir);
    let proc_seq = process(&netloom, &seq_dir);
    let plugin = PathBuf::from("/usr/lib/cni/host-local");
    let peer = plugin.exists().then(|| host_local(&plugin));

    println!();
    line(
        &format!("in-process allocate, {HELD} held, sequential"),
        &seq,
    );
    line(&format!("in-process allocate, {HELD} held, lowest"), &low);
    line(
        &format!("`netloom ipam allocate` process, {HELD} held"),
        &proc_seq,
    );
    let mut out = json!({
        "held": HELD,
        "in_process_sequential_median_us": us(seq.median),
        "in_process_lowest_median_us": us(low.median),
        "process_median_us": us(proc_seq.median),
        "targets": { "in_process_median_us": 50.0, "process_median_us": 3000.0 },
    });
    match &peer {
        Some(p) => {
            line("CNI host-local ADD process (empty /16, peer)", p);
            let ratio = us(p.median) / us(proc_seq.median);
            println!("host-local / netloom process median: {ratio:.1}x");
            out["host_local_median_us"] = json!(us(p.median));
            out["host_local_over_netloom"] = json!(ratio);
        }
        None => println!("peer: /usr/lib/cni/host-local not installed (apt-get install containernetworking-plugins)"),
    }
    let pass = us(seq.median) <= 50.0 && us(low.median) <= 50.0 && us(proc_seq.median) <= 3000.0;
    out["targets_met"] = json!(pass);
    println!(
        "targets (in-process <= 50 us, process <= 3 ms): {}",
        if pass { "met" } else { "NOT met" }
    );
    println!("{}", serde_json::to_string(&out).unwrap());
    if let Some(f) = json_out {
        std::fs::write(f, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    }
    for d in [seq_dir, low_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}
