//! Bandwidth shaping through the engine, proven with TCP transfers between
//! two sandboxes on one bridge network in a throwaway host: a limited
//! endpoint moves data at its rate in each direction, an unlimited one
//! much faster.
//!
//! Sockets are made on short-lived threads inside the sandboxes
//! (`Netns::run`); a socket keeps its namespace, so the transfer itself runs
//! on ordinary threads.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use netloom_engine::model::NetworkRequest;
use netloom_engine::shaping::Bandwidth;
use netloom_engine::{ConnectOptions, Engine};
use netloom_kernel::{Netlink, Netns};
use netloom_testhost::{host_or_skip, Host};

/// Bytes moved per measured transfer.
const SIZE: usize = 2_000_000;
const PORT: u16 = 5001;

fn mbit(bits_per_sec: f64) -> f64 {
    bits_per_sec / 1e6
}

/// A bridge network `shape` (10.61.0.0/24) with sandboxes `a` and `b`;
/// returns the engine and both endpoints' ids and IPv4 addresses.
fn setup(engine: &mut Engine) -> [(String, IpAddr); 2] {
    let request = NetworkRequest {
        name: "shape".into(),
        driver: "bridge".into(),
        subnets: vec!["10.61.0.0/24".into()],
        options: BTreeMap::new(),
        ..Default::default()
    };
    engine
        .create_network(&request)
        .unwrap_or_else(|e| panic!("{e}"));
    ["a", "b"].map(|sb| {
        engine.create_sandbox(sb).unwrap_or_else(|e| panic!("{e}"));
        let ep = engine
            .connect("shape", sb, &ConnectOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let ip = ep
            .leases
            .iter()
            .map(|l| l.ip)
            .find(IpAddr::is_ipv4)
            .expect("an IPv4 address");
        (ep.id, ip)
    })
}

/// Runs `f` with an engine whose state is in the host's private /run.
fn with_engine<T: Send>(host: &Host, f: impl FnOnce(&mut Engine) -> T + Send) -> T {
    host.enter(|| {
        let mut engine = Engine::open(Path::new("/run/netloom-state")).expect("open engine state");
        f(&mut engine)
    })
}

fn named(host: &Host, name: &str) -> Netns {
    host.enter(|| Netns::open_named(name))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Moves `SIZE` bytes from `from` to `to` (a server listening in `to`'s
/// namespace at `to_ip`) over TCP; returns the rate in bits per second,
/// measured at the receiver from accept to end of stream.
fn transfer(from: &Netns, to: &Netns, to_ip: IpAddr) -> f64 {
    let listener = to
        .run(|| TcpListener::bind((to_ip, PORT)))
        .unwrap()
        .unwrap_or_else(|e| panic!("bind {to_ip}:{PORT}: {e}"));
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let start = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => panic!("receive after {got} bytes: {e}"),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(got, SIZE, "short transfer");
        let _ = conn.write_all(b"done");
        got as f64 * 8.0 / secs
    });
    let mut conn = from
        .run(|| TcpStream::connect_timeout(&SocketAddr::new(to_ip, PORT), Duration::from_secs(5)))
        .unwrap()
        .unwrap_or_else(|e| panic!("connect to {to_ip}:{PORT}: {e}"));
    conn.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut sent = 0;
    while sent < SIZE {
        let n = chunk.len().min(SIZE - sent);
        conn.write_all(&chunk[..n]).expect("send");
        sent += n;
    }
    conn.shutdown(Shutdown::Write).unwrap();
    let mut ack = Vec::new();
    let _ = conn.read_to_end(&mut ack);
    receiver.join().expect("receiver thread")
}

/// Asserts a measured rate is the configured `limit` give or take: never
/// above it by more than what one burst adds over the transfer, and not
/// far below it (TCP over a token bucket runs close to the rate).
fn assert_near_limit(what: &str, measured: f64, limit: f64) {
    assert!(
        measured <= limit * 1.15,
        "{what}: {:.2} Mbit/s exceeds the {:.2} Mbit/s limit",
        mbit(measured),
        mbit(limit)
    );
    assert!(
        measured >= limit * 0.5,
        "{what}: {:.2} Mbit/s is far under the {:.2} Mbit/s limit",
        mbit(measured),
        mbit(limit)
    );
}

#[test]
fn limited_endpoint_moves_data_at_its_rate_each_way() {
    let host = host_or_skip!();
    let [(ep_a, ip_a), (_ep_b, ip_b)] = with_engine(&host, setup);
    let (ns_a, ns_b) = (named(&host, "a"), named(&host, "b"));

    // Unlimited first, as the baseline.
    let free_up = transfer(&ns_a, &ns_b, ip_b);
    let free_down = transfer(&ns_b, &ns_a, ip_a);

    // Ingress (towards a) 8 Mbit/s, egress (from a) 16 Mbit/s: different
    // rates prove each limit sits on its own direction.
    let bw = Bandwidth {
        ingress_rate: 8_000_000,
        ingress_burst: 160_000,
        egress_rate: 16_000_000,
        egress_burst: 320_000,
    };
    let read_back = with_engine(&host, |e| {
        e.shape_endpoint(&ep_a, &bw)
            .unwrap_or_else(|e| panic!("{e}"));
        e.endpoint_bandwidth(&ep_a)
            .unwrap_or_else(|e| panic!("{e}"))
    });
    assert_eq!(read_back.ingress_rate, 8_000_000);
    assert_eq!(read_back.egress_rate, 16_000_000);
    assert!(
        read_back.ingress_burst.abs_diff(160_000) < 1_000,
        "{read_back:?}"
    );
    assert!(
        read_back.egress_burst.abs_diff(320_000) < 1_000,
        "{read_back:?}"
    );

    let down = transfer(&ns_b, &ns_a, ip_a);
    let up = transfer(&ns_a, &ns_b, ip_b);
    eprintln!(
        "unlimited up {:.0} / down {:.0} Mbit/s; limited up {:.2} / down {:.2} Mbit/s",
        mbit(free_up),
        mbit(free_down),
        mbit(up),
        mbit(down)
    );
    assert_near_limit("ingress (b -> a)", down, 8e6);
    assert_near_limit("egress (a -> b)", up, 16e6);
    assert!(
        free_up > 10.0 * 16e6,
        "unlimited up only {:.1} Mbit/s",
        mbit(free_up)
    );
    assert!(
        free_down > 10.0 * 8e6,
        "unlimited down only {:.1} Mbit/s",
        mbit(free_down)
    );

    // Back to unlimited: the qdiscs go, and the speed comes back.
    let read_back = with_engine(&host, |e| {
        e.shape_endpoint(&ep_a, &Bandwidth::default())
            .unwrap_or_else(|e| panic!("{e}"));
        e.endpoint_bandwidth(&ep_a)
            .unwrap_or_else(|e| panic!("{e}"))
    });
    assert_eq!(read_back, Bandwidth::default());
    let again = transfer(&ns_b, &ns_a, ip_a);
    assert!(
        again > 10.0 * 8e6,
        "unshaped down only {:.1} Mbit/s",
        mbit(again)
    );
}

#[test]
fn one_direction_only_and_removal_with_the_endpoint() {
    let host = host_or_skip!();
    let [(ep_a, ip_a), (_, ip_b)] = with_engine(&host, setup);
    let (ns_a, ns_b) = (named(&host, "a"), named(&host, "b"));
    let bw = Bandwidth {
        egress_rate: 8_000_000,
        egress_burst: 160_000,
        ..Default::default()
    };
    let host_if = with_engine(&host, |e| {
        e.shape_endpoint(&ep_a, &bw)
            .unwrap_or_else(|e| panic!("{e}"));
        e.endpoint(&ep_a)
            .unwrap()
            .host_ifname
            .expect("a host-side veth")
    });
    let up = transfer(&ns_a, &ns_b, ip_b);
    let down = transfer(&ns_b, &ns_a, ip_a);
    assert_near_limit("egress (a -> b)", up, 8e6);
    assert!(
        down > 10.0 * 8e6,
        "ingress was not limited yet ran at {:.1} Mbit/s",
        mbit(down)
    );

    // The host side carries no qdisc of ours; the sandbox side a tbf.
    let mut nl_host = host.enter(Netlink::open_current).unwrap();
    let index = nl_host.link_index(&host_if).unwrap();
    assert_ne!(nl_host.qdisc_kind(index).unwrap().as_deref(), Some("tbf"));
    let mut nl_a = Netlink::open_in(&ns_a).unwrap();
    let eth0 = nl_a.link_index("eth0").unwrap();
    assert_eq!(nl_a.qdisc_kind(eth0).unwrap().as_deref(), Some("tbf"));

    // Disconnecting takes the limits with the interfaces: nothing is left.
    with_engine(&host, |e| {
        e.disconnect("shape", "a", None)
            .unwrap_or_else(|e| panic!("{e}"));
    });
    assert!(nl_host.get_link(host_if.as_str()).unwrap().is_none());
    assert!(nl_a.get_link("eth0").unwrap().is_none());
}

#[test]
fn bad_limits_are_refused_with_the_reason_and_change_nothing() {
    let host = host_or_skip!();
    let [(ep_a, _), _] = with_engine(&host, setup);
    let errors = with_engine(&host, |e| {
        let mut errs = Vec::new();
        for bw in [
            // Rate without burst.
            Bandwidth {
                ingress_rate: 8_000_000,
                ..Default::default()
            },
            // Burst without rate.
            Bandwidth {
                egress_burst: 100_000,
                ..Default::default()
            },
            // A valid ingress with an egress burst under one packet: the
            // whole call fails and the ingress limit is not left behind.
            Bandwidth {
                ingress_rate: 8_000_000,
                ingress_burst: 160_000,
                egress_rate: 8_000_000,
                egress_burst: 8_000,
            },
        ] {
            errs.push(e.shape_endpoint(&ep_a, &bw).unwrap_err().to_string());
        }
        errs.push(
            e.shape_endpoint("ffffffffffff", &Bandwidth::default())
                .unwrap_err()
                .to_string(),
        );
        let left = e
            .endpoint_bandwidth(&ep_a)
            .unwrap_or_else(|e| panic!("{e}"));
        (errs, left)
    });
    let (errs, left) = errors;
    assert!(
        errs[0].contains("ingressRate") && errs[0].contains("ingressBurst is not set"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].contains(&ep_a[..12]),
        "names the endpoint: {}",
        errs[0]
    );
    assert!(errs[1].contains("egressRate is not set"), "{}", errs[1]);
    assert!(
        errs[2].contains("smaller than one full packet") && errs[2].contains("at least 12112 bits"),
        "{}",
        errs[2]
    );
    assert!(errs[3].contains("ffffffffffff"), "{}", errs[3]);
    assert_eq!(
        left,
        Bandwidth::default(),
        "a refused call left limits behind"
    );
}

#[test]
fn macvlan_endpoints_shape_egress_only() {
    let host = host_or_skip!();
    // The parent: one end of a veth pair inside the throwaway host.
    let mut nl = host.enter(Netlink::open_current).unwrap();
    nl.create_veth(
        &netloom_kernel::LinkSpec::new("up0").up(),
        &netloom_kernel::LinkSpec::new("up1"),
    )
    .unwrap();
    let up1 = nl.link_index("up1").unwrap();
    nl.set_up(up1, true).unwrap();

    let (ep, errors) = with_engine(&host, |e| {
        let request = NetworkRequest {
            name: "lan".into(),
            driver: "macvlan".into(),
            subnets: vec!["10.62.0.0/24".into()],
            options: BTreeMap::from([("parent".to_string(), "up0".to_string())]),
            ..Default::default()
        };
        e.create_network(&request).unwrap_or_else(|e| panic!("{e}"));
        e.create_sandbox("m").unwrap_or_else(|e| panic!("{e}"));
        let ep = e
            .connect("lan", "m", &ConnectOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ep.host_ifname, None, "a macvlan has no host side");
        let ingress = Bandwidth {
            ingress_rate: 8_000_000,
            ingress_burst: 160_000,
            ..Default::default()
        };
        let err = e.shape_endpoint(&ep.id, &ingress).unwrap_err().to_string();
        let egress = Bandwidth {
            egress_rate: 8_000_000,
            egress_burst: 160_000,
            ..Default::default()
        };
        e.shape_endpoint(&ep.id, &egress)
            .unwrap_or_else(|e| panic!("{e}"));
        let read_back = e
            .endpoint_bandwidth(&ep.id)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_back.egress_rate, 8_000_000);
        assert_eq!(read_back.ingress_rate, 0);
        (ep, err)
    });
    assert!(
        errors.contains("no host-side interface") && errors.contains("macvlan"),
        "{errors}"
    );
    assert!(
        errors.contains("egressRate"),
        "suggests egress only: {errors}"
    );
    let ns = named(&host, "m");
    let mut inside = Netlink::open_in(&ns).unwrap();
    let index = inside.link_index(&ep.ifname).unwrap();
    assert_eq!(inside.qdisc_kind(index).unwrap().as_deref(), Some("tbf"));
}
