//! Shared helpers for the firewall tests: a throwaway host laid out the way
//! the bridge driver lays out a real one (bridges with gateway addresses,
//! veths into sandbox namespaces), plus an "outside" namespace joined to the
//! host by a veth, standing for the rest of the world.
#![allow(dead_code)] // each test binary uses a different subset

pub mod raw;
pub mod traffic;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netloom_engine::firewall::{
    Cidr, EndpointFirewall, Firewall, MacAddr, NetworkFirewall, PortMapping, Proto,
};
use netloom_kernel::{AddressOptions, IpPrefix, LinkSpec, Netlink, Netns, Route};
use netloom_testhost::Host;

/// The host's address facing the outside namespace, and the outside's own.
pub const HOST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const OUTSIDE4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const OUTSIDE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// A throwaway host with its firewall and an outside namespace.
pub struct Lab {
    pub host: Host,
    /// The host's network namespace.
    pub host_ns: Netns,
    /// Netlink in the host's namespace.
    pub nl: Netlink,
    /// The firewall under test, in the host's namespace.
    pub fw: Firewall,
    /// The outside world: `eth0` with [`OUTSIDE4`] and [`OUTSIDE6`], routes
    /// to every sandbox subnet through the host (so only the firewall
    /// decides what passes).
    pub outside: Netns,
}

/// One bridge network of the lab: `10.N.0.0/24` and `fd00:N::/64` (N in
/// hex), gateway `.1` / `::1` on bridge `nlbr-fe0000NN`.
pub struct TestNet {
    pub fw: NetworkFirewall,
    pub n: u8,
}

/// One sandbox: a namespace whose `eth0` is plugged into a network.
pub struct Sandbox {
    pub ns: Netns,
    /// Netlink inside the sandbox.
    pub nl: Netlink,
    /// Index of `eth0` inside the sandbox.
    pub eth0: u32,
    /// Its firewall facts (no published ports until a test adds some).
    pub ep: EndpointFirewall,
}

impl TestNet {
    pub fn gw4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.n, 0, 1)
    }

    pub fn gw6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, self.n.into(), 0, 0, 0, 0, 0, 1)
    }

    pub fn v4(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.n, 0, host)
    }

    pub fn v6(&self, host: u8) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, self.n.into(), 0, 0, 0, 0, 0, host.into())
    }
}

impl Sandbox {
    pub fn ip4(&self) -> Ipv4Addr {
        self.ep.ipv4.expect("sandbox has IPv4")
    }

    pub fn ip6(&self) -> Ipv6Addr {
        self.ep.ipv6.expect("sandbox has IPv6")
    }
}

fn prefix(addr: impl Into<IpAddr>, len: u8) -> IpPrefix {
    IpPrefix::new(addr.into(), len).expect("valid prefix")
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A published port mapping.
pub fn publish(
    host_ip: Option<IpAddr>,
    host_port: u16,
    container_port: u16,
    proto: Proto,
) -> PortMapping {
    PortMapping {
        host_ip,
        host_port,
        container_port,
        proto,
    }
}

impl Lab {
    /// A lab, or `None` after printing why the test is skipped (not root,
    /// no namespaces, no `nft`).
    pub fn new() -> Option<Lab> {
        let host = match Host::try_new() {
            Ok(host) => host,
            Err(err) => {
                netloom_testhost::skip(err);
                return None;
            }
        };
        match host.command("nft").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            _ => {
                netloom_testhost::skip("the nft program is missing: apt-get install nftables");
                return None;
            }
        }
        let host_ns = ok(Netns::open_path(host.netns_path()));
        ok(host_ns.write_sysctls(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ]));
        let mut nl = ok(Netlink::open_in(&host_ns));
        let fw = ok(Firewall::open_in(host.netns_path()));

        let outside = fresh_netns();
        ok(nl.create_veth(
            &LinkSpec::new("uplink").up(),
            &LinkSpec::new("eth0").netns(&outside),
        ));
        let uplink = ok(nl.link_index("uplink"));
        ok(nl.add_address(uplink, prefix(HOST4, 24), AddressOptions::default()));
        ok(nl.add_address(uplink, prefix(HOST6, 64), AddressOptions::nodad()));
        let mut out = ok(Netlink::open_in(&outside));
        let eth0 = bring_up(&mut out);
        ok(out.add_address(eth0, prefix(OUTSIDE4, 24), AddressOptions::default()));
        ok(out.add_address(eth0, prefix(OUTSIDE6, 64), AddressOptions::nodad()));
        ok(out.add_route(&Route::via(
            prefix(Ipv4Addr::new(10, 0, 0, 0), 8),
            HOST4.into(),
        )));
        ok(out.add_route(&Route::via(
            prefix(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 8),
            HOST6.into(),
        )));
        wait_link_local(&mut out, eth0);
        Some(Lab {
            host,
            host_ns,
            nl,
            fw,
            outside,
        })
    }

    /// Network number `n` (1..=250): its bridge with gateway addresses, and
    /// its firewall as `configure` leaves it, applied.
    pub fn network(&mut self, n: u8, configure: impl FnOnce(&mut NetworkFirewall)) -> TestNet {
        let id8 = format!("fe0000{n:02x}");
        let bridge = format!("nlbr-{id8}");
        let subnets: Vec<Cidr> = vec![
            ok(format!("10.{n}.0.0/24").parse()),
            ok(format!("fd00:{n:x}::/64").parse()),
        ];
        let mut fw = NetworkFirewall::new(id8, bridge.clone(), subnets);
        configure(&mut fw);
        let net = TestNet { fw, n };
        ok(self.nl.create_bridge(&LinkSpec::new(&bridge).up()));
        let br = ok(self.nl.link_index(&bridge));
        ok(self
            .nl
            .add_address(br, prefix(net.gw4(), 24), AddressOptions::default()));
        ok(self
            .nl
            .add_address(br, prefix(net.gw6(), 64), AddressOptions::nodad()));
        ok(self.fw.create_network(&net.fw));
        net
    }

    /// Index of a network's bridge in the host.
    pub fn bridge_index(&mut self, net: &TestNet) -> u32 {
        ok(self.nl.link_index(&net.fw.bridge))
    }

    /// Sandbox `.host` of `net`: veth `nlv-NNHH0000` on the bridge, `eth0`
    /// with MAC `02:00:00:00:NN:HH`, both addresses and default routes via
    /// the gateways (also on internal networks: the firewall must be what
    /// stops traffic). Its facts are not added to the firewall.
    pub fn sandbox(&mut self, net: &TestNet, host: u8) -> Sandbox {
        let ns = fresh_netns();
        let veth = format!("nlv-{:02x}{host:02x}0000", net.n);
        let mac = MacAddr([0x02, 0, 0, 0, net.n, host]);
        let br = self.bridge_index(net);
        ok(self.nl.create_veth(
            &LinkSpec::new(&veth).master(br).up(),
            &LinkSpec::new("eth0").netns(&ns).mac(mac),
        ));
        // As the bridge driver does (and Docker without its userland proxy):
        // with bridge netfilter active, a DNAT to the same bridge is sent
        // back in as a bridged frame, so a sandbox reaching its own
        // published port needs hairpin mode on its port.
        self.run(
            "ip",
            &[
                "link",
                "set",
                "dev",
                &veth,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ],
        );
        let mut nl = ok(Netlink::open_in(&ns));
        let eth0 = bring_up(&mut nl);
        let (ip4, ip6) = (net.v4(host), net.v6(host));
        ok(nl.add_address(eth0, prefix(ip4, 24), AddressOptions::default()));
        ok(nl.add_address(eth0, prefix(ip6, 64), AddressOptions::nodad()));
        ok(nl.add_route(&Route::default_via(net.gw4().into())));
        ok(nl.add_route(&Route::default_via(net.gw6().into())));
        self.wait_forwarding(&veth);
        wait_link_local(&mut nl, eth0);
        Sandbox {
            ns,
            nl,
            eth0,
            ep: EndpointFirewall {
                veth,
                mac,
                check_mac: true,
                ipv4: Some(ip4),
                ipv6: Some(ip6),
                ports: Vec::new(),
            },
        }
    }

    /// [`Lab::sandbox`], with its facts added to the firewall.
    pub fn connected(&mut self, net: &TestNet, host: u8) -> Sandbox {
        let sb = self.sandbox(net, host);
        ok(self.fw.add_endpoint(&net.fw, &sb.ep));
        sb
    }

    /// Waits until bridge port `veth` forwards. A port enslaved before it
    /// has carrier starts disabled; the bridge enables it when the kernel's
    /// link watcher reports the carrier, up to a second later (more under
    /// load), and drops every frame until then.
    fn wait_forwarding(&self, veth: &str) {
        let path = format!("/sys/class/net/{veth}/brport/state");
        let forwarding = || {
            let state = self.host.enter(|| std::fs::read_to_string(&path));
            state.is_ok_and(|s| s.trim() == "3") // BR_STATE_FORWARDING
        };
        assert!(
            traffic::eventually(Duration::from_secs(10), forwarding),
            "bridge port {veth} never started forwarding"
        );
    }

    /// Runs `prog args` in the host; panics with its stderr on failure.
    pub fn run(&self, prog: &str, args: &[&str]) -> String {
        let out = self
            .host
            .command(prog)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {prog}: {e}"));
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Turns bridge netfilter (`br_netfilter`: bridged IPv4/IPv6 frames
    /// also cross the `inet` hooks) on or off in the host. `Err` says why it
    /// cannot be turned on (the module is not loaded on this machine).
    pub fn bridge_netfilter(&self, on: bool) -> Result<(), String> {
        let value = if on { "1" } else { "0" };
        let keys = [
            "net.bridge.bridge-nf-call-iptables",
            "net.bridge.bridge-nf-call-ip6tables",
        ];
        if self.host_ns.read_sysctl(keys[0]).is_err() {
            return if on {
                Err("bridge netfilter (module br_netfilter) is not loaded".into())
            } else {
                Ok(())
            };
        }
        self.host_ns
            .write_sysctls(&keys.map(|k| (k, value)))
            .map_err(|e| e.to_string())
    }

    /// The MAC the host has learnt for `ip` on a network's bridge.
    pub fn neighbour_mac(&mut self, net: &TestNet, ip: IpAddr) -> Option<MacAddr> {
        let br = self.bridge_index(net);
        ok(self.nl.list_neighbours(Some(br)))
            .into_iter()
            .find(|n| n.ip == ip)
            .and_then(|n| n.mac)
    }
}

/// A new namespace without DAD (addresses and link-local addresses usable
/// at once), loopback to be brought up by [`bring_up`].
fn fresh_netns() -> Netns {
    let ns = ok(Netns::create_anonymous());
    ok(ns.write_sysctls(&[
        ("net.ipv6.conf.all.accept_dad", "0"),
        ("net.ipv6.conf.default.accept_dad", "0"),
    ]));
    ns
}

/// Waits until link `index` has an IPv6 link-local address: the kernel
/// adds it once the link watcher has seen the carrier, so from then on the
/// link carries traffic.
pub fn wait_link_local(nl: &mut Netlink, index: u32) -> Ipv6Addr {
    let mut found = None;
    traffic::eventually(Duration::from_secs(10), || {
        found = ok(nl.list_addresses(Some(index)))
            .into_iter()
            .find_map(|a| match a.prefix.addr() {
                IpAddr::V6(ip) if ip.segments()[0] == 0xfe80 => Some(ip),
                _ => None,
            });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("link #{index} never got a link-local address"))
}

/// Brings `lo` and `eth0` up; returns the index of `eth0`.
fn bring_up(nl: &mut Netlink) -> u32 {
    let lo = ok(nl.link_index("lo"));
    ok(nl.set_up(lo, true));
    let eth0 = ok(nl.link_index("eth0"));
    ok(nl.set_up(eth0, true));
    eth0
}
