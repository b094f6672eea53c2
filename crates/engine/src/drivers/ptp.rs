//! The ptp driver: routed point-to-point links, the pooled mode of
//! seeds/002 (`CNetPooled`). No bridge: every endpoint is a veth pair of
//! its own, its host side `nlp-` + 8 hex digits of the endpoint id, its peer
//! created directly inside the sandbox.
//!
//! Each endpoint's lease is `ip/32` (or `/128`) with a gateway of its own,
//! both from the pool. The wiring, per family:
//!
//! ```text
//! sandbox                                 host
//!   eth0  ip/32                             nlp-1a2b3c4d  gw/32
//!   gw/32 dev eth0 scope link               ip/32 dev nlp-1a2b3c4d scope link
//!   default via gw dev eth0
//! ```
//!
//! Each side holds the address the other side needs, so no proxy ARP is
//! needed: the sandbox's next hop `gw` is the host veth's own address, and
//! the host's next hop `ip` is the sandbox's, which it can answer for
//! because it has the on-link route back to `gw`. On top of that each side
//! gets a permanent neighbour entry for the other (`gw` -> host veth MAC in
//! the sandbox, `ip` -> endpoint MAC on the host), since both MACs are
//! known: the first packet needs no ARP or neighbour-discovery round trip,
//! and IPv6 works at once (the kernel solicits a forwarded packet's next hop
//! from the link's link-local address, which stays tentative for a second
//! or two, and joins solicited-node groups from a work queue). Endpoints
//! reach each other through the host's routing table (forwarding is turned
//! on when the network is made), and the host reaches each endpoint over
//! its host route.
//!
//! An internal network (`--internal`) gets no default route: each endpoint
//! routes only the network's subnets via its gateway, so it reaches the
//! host and the other endpoints of the network, and nothing else.
//!
//! No firewall rules are made for ptp networks: the endpoints' addresses
//! are routed as they are (not masqueraded on their way out), nothing
//! isolates them from other networks on the host, and `--publish` is
//! refused (publishing ports is the bridge driver's).

use std::collections::BTreeMap;
use std::net::IpAddr;

use netloom_kernel::{AddressOptions, IpPrefix, LinkSpec, MacAddr, Netlink, Netns, Route};
use netloom_model::endpoint::parse_mac;
use netloom_model::{Endpoint, Family, Mode, Network};

use super::bridge::{lease_prefix, mtu};
use crate::driver::{check_options, Driver};
use crate::kernel::Kernel;
use crate::EngineError;

pub struct PtpDriver;

/// Name of an endpoint's host-side veth: `nlp-` and 8 hex digits of its id.
pub fn veth_name(endpoint: &Endpoint) -> String {
    format!("nlp-{}", &endpoint.id[..8])
}

fn kerr(action: String) -> impl FnOnce(netloom_kernel::Error) -> EngineError {
    move |e| EngineError::kernel(&action, e)
}

/// What one lease puts in the kernel: the endpoint's address and its gateway.
struct Hop {
    /// As stored, e.g. `10.1.0.2/32`.
    text: String,
    ip: IpAddr,
    gateway: IpAddr,
}

/// The endpoint's leases as address/gateway pairs; in pooled mode every
/// lease has a gateway of its own.
fn hops(network: &Network, endpoint: &Endpoint) -> Result<Vec<Hop>, EngineError> {
    endpoint
        .leases
        .iter()
        .map(|lease| {
            let (ip, _) = lease_prefix(&lease.address)?;
            let gateway = lease.gateway.ok_or_else(|| {
                EngineError::from(netloom_model::ModelError::Invalid {
                    object: format!(
                        "network {:?}: endpoint {} (sandbox {})",
                        network.name,
                        &endpoint.id[..12],
                        endpoint.sandbox
                    ),
                    why: format!("lease {} has no gateway of its own", lease.address),
                    fix: "ptp networks must be in pooled mode; recreate the network with --driver ptp"
                        .into(),
                })
            })?;
            Ok(Hop {
                text: lease.address.clone(),
                ip,
                gateway,
            })
        })
        .collect()
}

/// Adds `route`; an identical route already there is fine when `tolerate_exists`.
fn add_route(
    nl: &mut Netlink,
    route: &Route,
    tolerate_exists: bool,
    err: impl FnOnce(netloom_kernel::Error) -> EngineError,
) -> Result<(), EngineError> {
    match nl.add_route(route) {
        Ok(()) => Ok(()),
        Err(e) if tolerate_exists && e.is_already_exists() => Ok(()),
        Err(e) => Err(err(e)),
    }
}

impl PtpDriver {
    /// Host side: the gateways on the host veth, a host route to each
    /// endpoint address through it, and the endpoint's MAC for each.
    /// Returns the host veth's MAC.
    fn configure_host(
        kernel: &mut Kernel,
        what: &str,
        veth: &str,
        mac: MacAddr,
        hops: &[Hop],
    ) -> Result<MacAddr, EngineError> {
        let host = kernel.host()?;
        let link = host
            .get_link(veth)
            .map_err(kerr(format!("{what}: find host veth {veth}")))?;
        let (idx, veth_mac) = match link {
            Some(netloom_kernel::Link {
                index,
                mac: Some(m),
                ..
            }) => (index, m),
            _ => {
                return Err(netloom_model::ModelError::Invalid {
                    object: what.to_string(),
                    why: format!("host veth {veth} vanished or has no MAC right after it was made"),
                    fix: "connect again; if it persists, `netloom check` and `ip link` tell what else manages links".into(),
                }
                .into())
            }
        };
        for hop in hops {
            host.add_neighbour(idx, hop.ip, mac).map_err(kerr(format!(
                "{what}: add neighbour {} lladdr {mac} on host veth {veth}",
                hop.ip
            )))?;
            host.add_address(idx, IpPrefix::host(hop.gateway), AddressOptions::nodad())
                .map_err(kerr(format!(
                    "{what}: add gateway {} to host veth {veth}",
                    hop.gateway
                )))?;
            let route = Route::on_link(IpPrefix::host(hop.ip), idx);
            host.add_route(&route).map_err(|e| {
                let hint = if e.is_already_exists() {
                    " (the host already has a route to this address, perhaps for another address space using the same subnet; `ip route show` tells)"
                } else {
                    ""
                };
                EngineError::kernel(
                    &format!("{what}: add host route {} dev {veth}{hint}", hop.ip),
                    e,
                )
            })?;
        }
        Ok(veth_mac)
    }

    /// Sandbox side: lo up, the /32 (/128) addresses, the interface up, an
    /// on-link route to each gateway, and the default (or, internal, the
    /// subnet) route via it.
    fn configure_inside(
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Netns,
        what: &str,
        hops: &[Hop],
        host_mac: MacAddr,
    ) -> Result<(), EngineError> {
        let mut nl = kernel.inside(sandbox)?;
        let err = |step: String| kerr(format!("{what}: {step}"));
        if endpoint.brings_loopback_up() {
            let lo = nl.link_index("lo").map_err(err("find lo".into()))?;
            nl.set_up(lo, true).map_err(err("bring lo up".into()))?;
        }
        let idx = nl
            .link_index(&endpoint.ifname)
            .map_err(err(format!("find {}", endpoint.ifname)))?;
        for hop in hops {
            nl.add_address(idx, IpPrefix::host(hop.ip), AddressOptions::nodad())
                .map_err(err(format!("add address {}", hop.text)))?;
        }
        nl.set_up(idx, true)
            .map_err(err(format!("bring {} up", endpoint.ifname)))?;
        for hop in hops {
            let gw = hop.gateway;
            nl.add_neighbour(idx, gw, host_mac)
                .map_err(err(format!("add neighbour {gw} lladdr {host_mac}")))?;
            add_route(
                &mut nl,
                &Route::on_link(IpPrefix::host(gw), idx),
                false,
                err(format!("add on-link route to gateway {gw}")),
            )?;
            if network.internal {
                let family = Family::of(&hop.ip);
                for s in network.subnets.iter().filter(|s| s.family() == family) {
                    let dst = IpPrefix::new(s.subnet.addr(), s.subnet.prefix())
                        .expect("subnet prefixes are valid");
                    add_route(
                        &mut nl,
                        &Route::via(dst, gw).dev(idx),
                        true,
                        err(format!("add route {} via {gw}", s.subnet)),
                    )?;
                }
            } else {
                // Another interface may already be the sandbox's way out
                // for this family; the first one stays.
                add_route(
                    &mut nl,
                    &Route::default_via(gw).dev(idx),
                    true,
                    err(format!("add default route via {gw}")),
                )?;
            }
        }
        Ok(())
    }
}

impl Driver for PtpDriver {
    fn name(&self) -> &'static str {
        "ptp"
    }

    fn mode(&self) -> Option<Mode> {
        Some(Mode::Pooled)
    }

    fn validate(&self, network: &Network) -> Result<(), EngineError> {
        check_options("ptp", network, &["mtu"])?;
        if network.mode != Mode::Pooled {
            return Err(netloom_model::ModelError::Invalid {
                object: format!("network {:?}", network.name),
                why: "the ptp driver routes every endpoint over a link of its own; it has only the pooled mode".into(),
                fix: "drop --mode shared (endpoints that share a subnet and gateway are the bridge driver's)".into(),
            }
            .into());
        }
        mtu(network)?;
        Ok(())
    }

    fn create_network(&mut self, _: &mut Kernel, network: &Network) -> Result<(), EngineError> {
        // No network-wide kernel object: only routing between endpoints.
        let here = Netns::current().map_err(kerr("open the host namespace".into()))?;
        let mut sysctls = vec![("net.ipv4.ip_forward", "1")];
        if network.families().contains(&Family::V6) {
            sysctls.push(("net.ipv6.conf.all.forwarding", "1"));
        }
        here.write_sysctls(&sysctls).map_err(kerr(format!(
            "network {:?}: enable forwarding",
            network.name
        )))
    }

    fn delete_network(&mut self, _: &mut Kernel, _: &Network) -> Result<(), EngineError> {
        // Forwarding stays on: other networks may rely on it.
        Ok(())
    }

    fn create_endpoint(
        &mut self,
        _: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
    ) -> Result<(), EngineError> {
        // The veth is made at join, directly into the sandbox; here only
        // what the driver cannot do is refused, before anything is made.
        if let Some(port) = endpoint.ports.first() {
            return Err(netloom_model::ModelError::Invalid {
                object: super::endpoint_what(network, endpoint),
                why: format!("the ptp driver does not publish ports (--publish {port}); publishing is the bridge driver's"),
                fix: "reach the endpoint at its own address (the host routes to it), or connect to a bridge network to publish".into(),
            }
            .into());
        }
        Ok(())
    }

    fn join(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Netns,
    ) -> Result<(), EngineError> {
        let veth = veth_name(endpoint);
        let what = super::endpoint_what(network, endpoint);
        let hops = hops(network, endpoint)?;
        let mac = MacAddr(parse_mac(&endpoint.mac)?);
        let mtu = mtu(network)?;
        {
            let mut outside = LinkSpec::new(&veth).up();
            let mut inside = LinkSpec::new(&endpoint.ifname).netns(sandbox).mac(mac);
            if let Some(m) = mtu {
                outside = outside.mtu(m);
                inside = inside.mtu(m);
            }
            kernel
                .host()?
                .create_veth(&outside, &inside)
                .map_err(|e| {
                    let hint = if e.is_already_exists() {
                        format!(" (the sandbox already has an interface {0}: choose another name with --ifname; or {veth} is a leftover: `netloom gc` removes it)", endpoint.ifname)
                    } else {
                        String::new()
                    };
                    EngineError::kernel(
                        &format!(
                            "{what}: create veth {veth} with peer {}{hint}",
                            endpoint.ifname
                        ),
                        e,
                    )
                })?;
        }
        let configured =
            PtpDriver::configure_host(kernel, &what, &veth, mac, &hops).and_then(|host_mac| {
                PtpDriver::configure_inside(
                    kernel, network, endpoint, sandbox, &what, &hops, host_mac,
                )
            });
        if let Err(e) = configured {
            // Leave nothing half made: the peer, the host addresses and
            // the host routes all go with the host side.
            let _ = kernel.host()?.delete_link(veth.as_str());
            return Err(e);
        }
        Ok(())
    }

    fn leave(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        _sandbox: Option<&Netns>,
    ) -> Result<(), EngineError> {
        let what = super::endpoint_what(network, endpoint);
        super::delete_link_if_present(kernel, &veth_name(endpoint), &what)?;
        Ok(())
    }

    fn endpoint_oper_info(
        &self,
        _network: &Network,
        endpoint: &Endpoint,
    ) -> BTreeMap<String, String> {
        let gateways: Vec<String> = endpoint
            .leases
            .iter()
            .filter_map(|l| l.gateway.map(|g| g.to_string()))
            .collect();
        BTreeMap::from([
            ("host_interface".to_string(), veth_name(endpoint)),
            ("gateways".to_string(), gateways.join(",")),
        ])
    }

    fn host_links(&self, _: &Network, endpoints: &[Endpoint]) -> Vec<String> {
        endpoints.iter().map(veth_name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(options: &[(&str, &str)], mode: Mode) -> Network {
        crate::drivers::test_network("routed", "ptp", "10.70.0.0/24", options, mode)
    }

    #[test]
    fn validate_knows_mtu_and_refuses_the_rest() {
        let d = PtpDriver;
        assert!(d
            .validate(&network(&[("mtu", "1400")], Mode::Pooled))
            .is_ok());
        let e = d
            .validate(&network(&[("parent", "eth0")], Mode::Pooled))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no option \"parent\"") && e.contains("mtu"),
            "{e}"
        );
        let e = d
            .validate(&network(&[("mtu", "9")], Mode::Pooled))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MTU \"9\""), "{e}");
        let e = d
            .validate(&network(&[], Mode::Shared))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pooled"), "{e}");
        assert_eq!(d.mode(), Some(Mode::Pooled));
    }

    #[test]
    fn host_links_are_nlp_names_of_the_endpoints() {
        let ep = Endpoint {
            id: "0a1b2c3d4e5f".repeat(4),
            network: "routed".into(),
            sandbox: "a".into(),
            sandbox_inode: 1,
            ifname: "eth0".into(),
            host_ifname: None,
            mac: "02:00:00:00:00:01".into(),
            aliases: vec![],
            ports: vec![],
            state: netloom_model::EndpointState::Ready,
            container_id: None,
            leases: vec![],
        };
        let net = network(&[], Mode::Pooled);
        assert_eq!(
            PtpDriver.host_links(&net, std::slice::from_ref(&ep)),
            ["nlp-0a1b2c3d"]
        );
        assert!(PtpDriver.host_links(&net, &[]).is_empty());
        assert_eq!(
            PtpDriver.endpoint_oper_info(&net, &ep)["host_interface"],
            "nlp-0a1b2c3d"
        );
    }
}
