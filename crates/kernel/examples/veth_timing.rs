//! Times veth pair creation and deletion, the peer born in a sandbox
//! namespace, as on netloom's connect path.
//!
//! Runs as root entirely inside two throwaway anonymous namespaces (one
//! plays the host with a bridge, one the sandbox); the machine's own network
//! is not touched.
//!
//! ```text
//! cargo run --release -p netloom-kernel --example veth_timing [ROUNDS]
//! ```

use std::time::{Duration, Instant};

use netloom_kernel::{AddressOptions, LinkSpec, Netlink, Netns, Result, Route};

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("veth_timing: needs root to create network namespaces");
        std::process::exit(2);
    }
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(200);

    let host_ns = Netns::create_anonymous()?;
    let sandbox = Netns::create_anonymous()?;
    let mut host = Netlink::open_in(&host_ns)?;
    let mut inside = Netlink::open_in(&sandbox)?;
    host.create_bridge(&LinkSpec::new("nl-br0").up())?;
    let bridge = host.link_index("nl-br0")?;

    let veth = |host: &mut Netlink| {
        host.create_veth(
            &LinkSpec::new("nl-t0").master(bridge).up(),
            &LinkSpec::new("eth0").netns(&sandbox),
        )
    };

    // Warm up caches and allocators.
    for _ in 0..10 {
        veth(&mut host)?;
        host.delete_link("nl-t0")?;
    }

    let mut create = Vec::with_capacity(rounds);
    let mut delete = Vec::with_capacity(rounds);
    let mut both = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        veth(&mut host)?;
        let t1 = Instant::now();
        host.delete_link("nl-t0")?;
        let t2 = Instant::now();
        create.push(t1 - t0);
        delete.push(t2 - t1);
        both.push(t2 - t0);
    }

    // The whole connect sequence with reused sockets: veth (enslaved, up),
    // then inside the sandbox: find, up, address, default route.
    let mut connect = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        veth(&mut host)?;
        let eth0 = inside.link_index("eth0")?;
        inside.set_up(eth0, true)?;
        inside.add_address(
            eth0,
            "10.9.0.2/24".parse().unwrap(),
            AddressOptions::default(),
        )?;
        inside.add_route(&Route::default_via("10.9.0.1".parse().unwrap()))?;
        connect.push(t0.elapsed());
        host.delete_link("nl-t0")?;
    }

    println!("veth_timing: {rounds} rounds, peer created inside a sandbox namespace");
    report("create veth", &mut create);
    report("delete veth", &mut delete);
    report("create+delete", &mut both);
    report("full connect", &mut connect);
    Ok(())
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "  {what:<14} median {:>8.1} us   p10 {:>8.1} us   p90 {:>8.1} us   max {:>8.1} us",
        micros(at(0.5)),
        micros(at(0.1)),
        micros(at(0.9)),
        micros(at(1.0)),
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
