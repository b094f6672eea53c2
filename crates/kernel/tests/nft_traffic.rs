//! Elements change what traffic passes: a source address added to a
//! skeleton's `@blocked4` set cuts pings, deleting it heals them. Traffic
//! flows only between two throwaway hosts joined by a veth pair (needs root).

mod nft_support;

use std::net::Ipv4Addr;
use std::time::Duration;

use netloom_kernel::nft::{Element, Family, SetRef, Value};
use netloom_testhost::Host;
use nft_support::*;

const A_ADDR: &str = "10.99.0.1";
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

const CUT_SKELETON: &str = "
table inet netloom-cut {
    set blocked4 { type ipv4_addr; }
    chain input {
        type filter hook input priority filter; policy accept;
        ip saddr @blocked4 drop
    }
}
";

/// One `ping -c1 -W1` from `from` to `to`.
fn ping(from: &Host, to: &str) -> bool {
    from.command("ping")
        .args(["-c1", "-W1", "-n", "-q", to])
        .output()
        .expect("run ping")
        .status
        .success()
}

/// Pings until one answer comes back (a fresh link may need a moment).
fn ping_eventually(from: &Host, to: &str) -> bool {
    (0..5).any(|attempt| {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        ping(from, to)
    })
}

#[test]
fn an_element_in_blocked4_cuts_pings_and_deleting_it_heals_them() {
    let Some(a) = nft_host() else { return };
    let b = Host::new();
    let peer_ns = b.pid().to_string();
    run(
        &a,
        "ip",
        &[
            "link", "add", "cut-a", "type", "veth", "peer", "name", "cut-b", "netns", &peer_ns,
        ],
    );
    run(
        &a,
        "ip",
        &["addr", "add", &format!("{A_ADDR}/24"), "dev", "cut-a"],
    );
    run(&a, "ip", &["link", "set", "cut-a", "up"]);
    run(
        &b,
        "ip",
        &["addr", "add", &format!("{B_ADDR}/24"), "dev", "cut-b"],
    );
    run(&b, "ip", &["link", "set", "cut-b", "up"]);
    apply(&a, CUT_SKELETON);
    let mut nft = socket(&a);
    let blocked = SetRef::new(Family::Inet, "netloom-cut", "blocked4");
    let peer = Element::new(Value::Ipv4Addr(B_ADDR));

    assert!(ping_eventually(&b, A_ADDR), "ping works before the cut");
    nft.add_elements(&blocked, std::slice::from_ref(&peer))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !ping(&b, A_ADDR),
        "ping fails while {B_ADDR} is in @blocked4"
    );
    assert!(!ping(&b, A_ADDR), "and keeps failing");
    nft.delete_elements(&blocked, std::slice::from_ref(&peer))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        ping_eventually(&b, A_ADDR),
        "ping works again after the element is deleted"
    );
}
