//! Times per-endpoint nftables work in a throwaway network namespace:
//! adding and deleting 1,000 elements, one transaction each, into a set
//! and into a concatenated map, over an in-process netlink socket; compared
//! with spawning `nft add element ...` per element.
//!
//! Run as root: `cargo run --release -p netloom-kernel --example nft_timing`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netloom_kernel::nft::{apply_ruleset, Element, Family, NftSocket, SetRef, Value};
use netloom_testhost::Host;

const N: usize = 1000;
const WINDOW: usize = 100;
const SPAWNS: usize = 50;

const SKELETON: &str = "
table inet netloom-timing {
    set addrs { type ipv4_addr; }
    map pub4 { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
}
";

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8)
}

fn median(samples: &[Duration]) -> f64 {
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let mid = us.len() / 2;
    if us.len() % 2 == 0 {
        (us[mid - 1] + us[mid]) / 2.0
    } else {
        us[mid]
    }
}

/// Times `op` once per element, in order.
fn time_each(elements: &[Element], mut op: impl FnMut(&Element)) -> Vec<Duration> {
    elements
        .iter()
        .map(|e| {
            let start = Instant::now();
            op(e);
            start.elapsed()
        })
        .collect()
}

fn report(what: &str, adds: &[Duration], deletes: &[Duration]) {
    println!(
        "{what:<44} add: first {WINDOW} {:>7.1} µs, last {WINDOW} {:>7.1} µs | delete: first {WINDOW} {:>7.1} µs, last {WINDOW} {:>7.1} µs",
        median(&adds[..WINDOW]),
        median(&adds[N - WINDOW..]),
        median(&deletes[..WINDOW]),
        median(&deletes[N - WINDOW..]),
    );
}

fn main() {
    let host = match Host::try_new() {
        Ok(host) => host,
        Err(err) => {
            eprintln!("nft_timing: {err}");
            std::process::exit(1);
        }
    };
    if let Err(err) = apply_ruleset(Some(host.netns_path()), SKELETON) {
        eprintln!("nft_timing: {err}");
        std::process::exit(1);
    }
    let mut nft = NftSocket::open_in(host.netns_path()).unwrap_or_else(|e| panic!("{e}"));

    let set = SetRef::new(Family::Inet, "netloom-timing", "addrs");
    let set_elements: Vec<Element> = (0..N)
        .map(|i| Element::new(Value::Ipv4Addr(addr(i))))
        .collect();
    let map = SetRef::new(Family::Inet, "netloom-timing", "pub4");
    let map_elements: Vec<Element> = (0..N)
        .map(|i| {
            Element::concat([
                Value::Ipv4Addr(Ipv4Addr::new(192, 0, 2, 1)),
                Value::InetService(10_000 + i as u16),
            ])
            .with_data([Value::Ipv4Addr(addr(i)), Value::InetService(80)])
        })
        .collect();

    println!("{N} elements, one transaction each, median per operation (in-process netlink):");
    for (what, target, elements) in [
        ("set ipv4_addr", &set, &set_elements),
        ("map ipv4_addr . inet_service : (same)", &map, &map_elements),
    ] {
        let adds = time_each(elements, |e| {
            nft.add_elements(target, std::slice::from_ref(e))
                .unwrap_or_else(|err| panic!("{err}"))
        });
        assert_eq!(nft.list_raw_elements(target).unwrap().len(), N);
        let deletes = time_each(elements, |e| {
            nft.delete_elements(target, std::slice::from_ref(e))
                .unwrap_or_else(|err| panic!("{err}"))
        });
        assert!(nft.list_raw_elements(target).unwrap().is_empty());
        report(what, &adds, &deletes);
    }

    // The same work done by spawning nft once per element.
    let spawn_adds: Vec<Duration> = (0..SPAWNS)
        .map(|i| {
            let cmd = format!("add element inet netloom-timing addrs {{ {} }}", addr(i));
            let start = Instant::now();
            let out = host.command("nft").arg(&cmd).output().expect("run nft");
            let took = start.elapsed();
            assert!(
                out.status.success(),
                "nft {cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect();
    assert_eq!(nft.list_raw_elements(&set).unwrap().len(), SPAWNS);
    let spawned = median(&spawn_adds);
    let in_process = median(&time_each(&set_elements[SPAWNS..2 * SPAWNS], |e| {
        nft.add_elements(&set, std::slice::from_ref(e))
            .unwrap_or_else(|err| panic!("{err}"))
    }));
    println!("spawning `nft add element ...` ({SPAWNS} times), median: {spawned:>9.1} µs");
    println!("in-process add of the same kind ({SPAWNS} times), median: {in_process:>8.1} µs ({:.0}x faster)", spawned / in_process);
}
