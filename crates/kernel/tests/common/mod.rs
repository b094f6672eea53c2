//! Shared helpers for the kernel tests. Everything runs inside throwaway
//! hosts from `netloom-testhost`; traffic only goes to addresses inside
//! namespaces the test made.

#![allow(dead_code)]

use std::process::Command;

use netloom_kernel::{Netlink, Netns};
use netloom_testhost::Host;

/// The host's own namespace and a netlink socket in it.
pub fn host_netlink(host: &Host) -> (Netns, Netlink) {
    let ns = Netns::open_path(host.netns_path()).expect("open the test host's netns");
    let nl = Netlink::open_in(&ns).expect("open netlink in the test host");
    (ns, nl)
}

/// Creates named namespace `name` inside the host (in its private /run/netns).
pub fn named_netns(host: &Host, name: &str) -> Netns {
    host.enter(|| Netns::create_named(name))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether `ping` can run here; prints a SKIP line for the traffic part if not.
pub fn have_ping(host: &Host) -> bool {
    match host.command("ping").arg("-V").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            netloom_testhost::skip(format!(
                "traffic checks: `ping -V` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            false
        }
        Err(e) => {
            netloom_testhost::skip(format!(
                "traffic checks: cannot run ping ({e}); install iputils-ping"
            ));
            false
        }
    }
}

/// `ip netns exec NS ping -c1 -W1 ADDR` inside the host.
fn ping_once(host: &Host, netns: &str, addr: &str) -> bool {
    let out = ping_command(host, netns, addr)
        .output()
        .expect("run ip netns exec ping");
    out.status.success()
}

fn ping_command(host: &Host, netns: &str, addr: &str) -> Command {
    let mut cmd = host.command("ip");
    cmd.args(["netns", "exec", netns, "ping", "-c1", "-W1", "-n", addr]);
    cmd
}

/// Traffic must get through (three tries, for a first packet lost to
/// neighbour resolution or a port still coming up).
pub fn assert_ping(host: &Host, netns: &str, addr: &str) {
    for _ in 0..3 {
        if ping_once(host, netns, addr) {
            return;
        }
    }
    let out = ping_command(host, netns, addr).output().unwrap();
    panic!(
        "ping {addr} from netns {netns} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Traffic must not get through.
pub fn assert_no_ping(host: &Host, netns: &str, addr: &str) {
    assert!(
        !ping_once(host, netns, addr),
        "ping {addr} from netns {netns} succeeded but must fail"
    );
}
