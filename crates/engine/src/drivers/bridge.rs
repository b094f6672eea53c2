//! The bridge driver: a Linux bridge per network in the host namespace,
//! holding the gateway addresses; a veth pair per endpoint, its host side
//! a port of the bridge and its peer created directly inside the sandbox.
//! NAT, published ports, isolation and anti-spoofing are nftables rules of
//! the network ([`crate::firewall`]).
//!
//! Joining, in order: the veth pair is made (host side up, not yet a bridge
//! port); the sandbox side gets its addresses, comes up and gets its routes;
//! the endpoint's firewall facts (MAC, addresses) are added; only then is
//! the host side made a bridge port, with hairpin mode on. A port that joins
//! the bridge with carrier already present forwards at once, and no frame
//! reaches the bridge before the anti-spoofing guard knows the port.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netloom_kernel::{AddressOptions, IpPrefix, LinkSpec, MacAddr, Netlink, Netns, Route};
use netloom_model::endpoint::parse_mac;
use netloom_model::{Endpoint, Mode, ModelError, Network};

use super::{delete_link_if_present, delete_link_in_background_if_present};
use crate::driver::{check_options, Driver};
use crate::firewall::{EndpointFirewall, NetworkFirewall};
use crate::kernel::Kernel;
use crate::EngineError;

#[derive(Default)]
pub struct BridgeDriver {
    /// The endpoint whose published ports [`Driver::prepare_join`] put in
    /// with its other firewall facts, so that
    /// `program_external_connectivity` has nothing left to do for it.
    published_on_join: Option<String>,
}

/// Name of a network's bridge: `nlbr-` and the first 8 hex digits of its id.
pub fn bridge_name(network: &Network) -> String {
    format!("nlbr-{}", &network.id[..8])
}

/// Name of an endpoint's host-side veth: `nlv-` and 8 hex digits of its id.
pub fn veth_name(endpoint: &Endpoint) -> String {
    format!("nlv-{}", &endpoint.id[..8])
}

/// The network's MTU option, if set.
pub fn mtu(network: &Network) -> Result<Option<u32>, EngineError> {
    match network.options.get("mtu") {
        None => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(m) if (68..=65535).contains(&m) => Ok(Some(m)),
            _ => Err(ModelError::Invalid {
                object: format!("network {:?}", network.name),
                why: format!("MTU {v:?} is not a number from 68 to 65535"),
                fix: "give e.g. --mtu 1450".into(),
            }
            .into()),
        },
    }
}

/// A true/false option of the network, `default` when unset.
fn bool_option(network: &Network, key: &str, default: bool) -> Result<bool, EngineError> {
    match network.options.get(key).map(String::as_str) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(ModelError::Invalid {
            object: format!("network {:?}", network.name),
            why: format!("{key}={v:?} is not true or false"),
            fix: format!("give -o {key}=true or -o {key}=false"),
        }
        .into()),
    }
}

/// Whether the network is isolated from other netloom networks (default yes).
pub fn isolated(network: &Network) -> Result<bool, EngineError> {
    bool_option(network, "isolate", true)
}

/// Whether traffic from the network leaving the host is masqueraded
/// (default yes; `-o masquerade=false` makes a routed network).
pub fn masqueraded(network: &Network) -> Result<bool, EngineError> {
    bool_option(network, "masquerade", true)
}

/// Whether the bridge holds the gateway addresses and sandboxes get a
/// default route through them (default yes; `-o gateway=false` leaves the
/// bridge unaddressed, a plain layer-2 segment).
pub fn bridge_is_gateway(network: &Network) -> Result<bool, EngineError> {
    bool_option(network, "gateway", true)
}

/// Whether a sandbox may send only from the MAC netloom gave it (default
/// yes; `-o mac_check=false` lets something else, such as the CNI `tuning`
/// plugin, change the MAC later; source addresses stay checked).
pub fn mac_checked(network: &Network) -> Result<bool, EngineError> {
    bool_option(network, "mac_check", true)
}

/// The network's firewall description.
pub fn network_firewall(network: &Network) -> Result<NetworkFirewall, EngineError> {
    let mut fw = NetworkFirewall::new(&network.id[..8], bridge_name(network), network.cidrs());
    fw.internal = network.internal;
    fw.isolate = isolated(network)?;
    fw.masquerade = masqueraded(network)?;
    Ok(fw)
}

/// An endpoint's firewall facts; its published ports only when `ports`.
pub fn endpoint_firewall(
    network: &Network,
    endpoint: &Endpoint,
    ports: bool,
) -> Result<EndpointFirewall, EngineError> {
    let mut fw = EndpointFirewall {
        veth: veth_name(endpoint),
        mac: MacAddr(parse_mac(&endpoint.mac)?),
        check_mac: mac_checked(network)?,
        ipv4: None,
        ipv6: None,
        ports: if ports {
            endpoint.ports.clone()
        } else {
            Vec::new()
        },
    };
    for lease in &endpoint.leases {
        match lease.ip {
            IpAddr::V4(ip) => fw.ipv4 = Some(ip),
            IpAddr::V6(ip) => fw.ipv6 = Some(ip),
        }
    }
    Ok(fw)
}

fn gateway_prefixes(network: &Network) -> Vec<IpPrefix> {
    network
        .subnets
        .iter()
        .filter_map(|s| s.gateway.and_then(|g| IpPrefix::new(g, s.subnet.prefix())))
        .collect()
}

fn kerr(action: String) -> impl FnOnce(netloom_kernel::Error) -> EngineError {
    move |e| EngineError::kernel(&action, e)
}

/// A bridge's own MAC, set when it is made. Without one a bridge takes the
/// lowest of its ports' MACs, so it would change as sandboxes come and go:
/// each change leaves the sandboxes with a stale MAC for their gateway and
/// makes the bridge announce its multicast memberships again, to every
/// port. Locally administered, from the network's id; `0a:` keeps it apart
/// from the endpoints' `02:`.
fn bridge_mac(network: &Network) -> [u8; 6] {
    let mut mac = [0x0a, 0, 0, 0, 0, 0];
    for (i, b) in mac.iter_mut().enumerate().skip(1) {
        *b = network
            .id
            .get(i * 2..i * 2 + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    mac
}

/// What a sandbox's end of the veth must not send: the bridge floods
/// whatever it sends to a multicast group (an address probe, a router
/// solicitation, a listener report) to every port of the network, so each
/// connect would cost work proportional to the endpoints already there.
///
/// On a network without IPv6 the interface comes up without an IPv6
/// link-local address (see [`configure_inside`]). On one with IPv6 it
/// keeps it, but probes no address (netloom's addresses are its own to
/// give out) and takes no router advertisements: its routes are
/// netloom's, and another sandbox could otherwise advertise itself as the
/// way out. These are sysctls, whose lookup the kernel makes in a list of
/// every namespace's interfaces of that name, so only when needed.
fn ipv6_sysctls(ifname: &str) -> Vec<(String, &'static str)> {
    // The slash form: an interface name may hold a dot.
    let key = |k: &str| format!("net/ipv6/conf/{ifname}/{k}");
    vec![(key("accept_dad"), "0"), (key("accept_ra"), "0")]
}

/// Brings up a link of a network, the bridge or a sandbox's end: on a
/// network without IPv6 it gets no link-local address, whose probes and
/// reports would be flooded to every sandbox (see [`ipv6_sysctls`]).
fn bring_up(nl: &mut Netlink, link: u32, has_v6: bool) -> netloom_kernel::Result<()> {
    if has_v6 {
        nl.set_up(link, true)
    } else {
        nl.set_up_without_link_local(link)
    }
}

fn has_v6(endpoint: &Endpoint) -> bool {
    endpoint
        .leases
        .iter()
        .any(|l| l.family == netloom_model::Family::V6)
}

/// A socket inside the sandbox, with the endpoint's IPv6 sysctls written
/// there on the same trip.
fn open_inside(
    kernel: &mut Kernel,
    endpoint: &Endpoint,
    sandbox: &Netns,
) -> Result<Netlink, EngineError> {
    let sysctls = if has_v6(endpoint) {
        ipv6_sysctls(&endpoint.ifname)
    } else {
        Vec::new()
    };
    let sysctls: Vec<(&str, &str)> = sysctls.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    kernel.inside_with_sysctls(sandbox, &sysctls)
}

/// Addresses, loopback, routes inside the sandbox, through `nl`.
fn configure_inside(
    nl: &mut Netlink,
    network: &Network,
    endpoint: &Endpoint,
    what: &str,
) -> Result<(), EngineError> {
    let has_v6 = has_v6(endpoint);
    let err = |step: &str| kerr(format!("{what}: {step}"));
    let idx = nl
        .link_index(&endpoint.ifname)
        .map_err(err("find the interface"))?;
    let mut prefixes = Vec::with_capacity(endpoint.leases.len());
    for lease in &endpoint.leases {
        let (ip, len) = lease_prefix(&lease.address)?;
        prefixes.push(IpPrefix::new(ip, len).expect("lease prefixes are valid"));
    }
    let gateways: Vec<IpAddr> = if network.internal || !bridge_is_gateway(network)? {
        Vec::new()
    } else {
        endpoint.leases.iter().filter_map(|l| l.gateway).collect()
    };
    // Loopback up (see `Endpoint::brings_loopback_up`), the addresses,
    // the interface up, the default routes: one send (see
    // `Netlink::batch`); the error names the step that failed. Where
    // another interface already is the sandbox's way out for a family,
    // the first one stays.
    nl.batch(|nl| {
        if endpoint.brings_loopback_up() {
            nl.set_up("lo", true)?;
        }
        for p in &prefixes {
            nl.add_address(idx, *p, AddressOptions::nodad())?;
        }
        bring_up(nl, idx, has_v6)?;
        for gw in &gateways {
            nl.add_route_unless_one_exists(&Route::default_via(*gw).dev(idx))?;
        }
        Ok(())
    })
    .map_err(err(&format!(
        "set up {}, loopback and default routes",
        endpoint.ifname
    )))
}

impl Driver for BridgeDriver {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn validate(&self, network: &Network) -> Result<(), EngineError> {
        check_options(
            "bridge",
            network,
            &["mtu", "isolate", "masquerade", "gateway", "mac_check"],
        )?;
        if network.mode == Mode::Pooled {
            return Err(ModelError::Invalid {
                object: format!("network {:?}", network.name),
                why: "the bridge driver shares each subnet among its endpoints; it has no pooled mode".into(),
                fix: "drop --mode pooled (routed, per-endpoint gateways are the ptp driver's)".into(),
            }
            .into());
        }
        mtu(network)?;
        isolated(network)?;
        masqueraded(network)?;
        mac_checked(network)?;
        bridge_is_gateway(network)?;
        Ok(())
    }

    fn create_network(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
    ) -> Result<(), EngineError> {
        let br = bridge_name(network);
        let what = format!("network {:?}", network.name);
        let host = kernel.host()?;
        let has_v6 = network.families().contains(&netloom_model::Family::V6);
        // Up once its sysctls are written.
        let mut spec = LinkSpec::new(&br).mac(MacAddr(bridge_mac(network)));
        if let Some(m) = mtu(network)? {
            spec = spec.mtu(m);
        }
        host.create_bridge(&spec)
            .map_err(kerr(format!("{what}: create bridge {br}")))?;
        let index = host
            .link_index(&br)
            .map_err(kerr(format!("{what}: find bridge {br}")))?;
        let gateways = if bridge_is_gateway(network)? {
            gateway_prefixes(network)
        } else {
            Vec::new()
        };
        for p in gateways {
            host.add_address(index, p, AddressOptions::nodad())
                .map_err(kerr(format!(
                    "{what}: add gateway {}/{} to {br}",
                    p.addr(),
                    p.prefix_len()
                )))?;
        }
        let here = Netns::current().map_err(kerr("open the host namespace".into()))?;
        let no_ipv6 = format!("net/ipv6/conf/{br}/disable_ipv6");
        let mut sysctls = vec![("net.ipv4.ip_forward", "1")];
        if has_v6 {
            sysctls.push(("net.ipv6.conf.all.forwarding", "1"));
        } else if std::path::Path::new("/proc/sys/net/ipv6").exists() {
            // No IPv6 on an IPv4 network's bridge: whatever it would send
            // (address probes, listener reports each time a port joins,
            // router solicitations) goes to every sandbox on the network.
            sysctls.push((&no_ipv6, "1"));
        }
        here.write_sysctls(&sysctls)
            .map_err(kerr(format!("{what}: enable forwarding")))?;
        bring_up(kernel.host()?, index, has_v6).map_err(kerr(format!("{what}: bring {br} up")))?;
        kernel
            .firewall()?
            .create_network(&network_firewall(network)?)?;
        Ok(())
    }

    fn delete_network(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
    ) -> Result<(), EngineError> {
        delete_link_if_present(
            kernel,
            &bridge_name(network),
            &format!("network {:?}", network.name),
        )?;
        kernel.firewall()?.remove_network(&network.id[..8])?;
        Ok(())
    }

    fn make_links(
        &self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Netns,
    ) -> Result<(), EngineError> {
        let veth = veth_name(endpoint);
        let what = super::endpoint_what(network, endpoint);
        let mac = MacAddr(parse_mac(&endpoint.mac)?);
        let mtu = mtu(network)?;
        // Down until it is a port (see `join`).
        let mut outside = LinkSpec::new(&veth);
        let mut inside = LinkSpec::new(&endpoint.ifname).netns(sandbox).mac(mac);
        if let Some(m) = mtu {
            outside = outside.mtu(m);
            inside = inside.mtu(m);
        }
        kernel
            .host()?
            .create_veth(&outside, &inside)
            .map_err(kerr(format!(
                "{what}: create veth {veth} with peer {}",
                endpoint.ifname
            )))?;
        Ok(())
    }

    fn unmake_links(
        &self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Netns,
    ) -> Result<(), EngineError> {
        let what = super::endpoint_what(network, endpoint);
        delete_link_in_background_if_present(kernel, &veth_name(endpoint), Some(sandbox), &what)?;
        Ok(())
    }

    fn prepare_join(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Netns,
    ) -> Result<(), EngineError> {
        // Its published ports go in with the rest, in one transaction
        // (they only point at its address). Nothing passes before the
        // port is up, at the end of `join`.
        kernel.firewall()?.add_endpoint(
            &network_firewall(network)?,
            &endpoint_firewall(network, endpoint, true)?,
        )?;
        if !endpoint.ports.is_empty() {
            self.published_on_join = Some(endpoint.id.clone());
        }
        // With IPv6 its sysctls are written from inside the sandbox, and
        // the socket is opened on that trip (`open_inside`).
        if !has_v6(endpoint) {
            kernel.open_inside_ahead(sandbox);
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
        let br = bridge_name(network);
        let veth = veth_name(endpoint);
        let what = super::endpoint_what(network, endpoint);
        // The veth pair is made (`make_links`); a failure from here on
        // takes it away again.
        let rest = (|| -> Result<(), EngineError> {
            let master = kernel.host()?.link_index(&br).map_err(kerr(format!(
                "{what}: find bridge {br} (is the network's bridge gone? `netloom check` tells)"
            )))?;
            // A port needs no IPv6 of its own (the bridge routes), and with
            // it on, each port coming up walks the host's IPv6 routing
            // table, which grows by a route per port. Without it the port
            // works the same. Switched off while the sandbox's end is set
            // up, on the helper thread if there is one.
            let no_ipv6 = || {
                if let Err(e) = netloom_kernel::disable_ipv6_here(&veth) {
                    tracing::debug!("{what}: {e}; {veth} keeps IPv6");
                }
            };
            let helper = kernel.helper();
            let mut inside = open_inside(kernel, endpoint, sandbox)?;
            let mut configure = || configure_inside(&mut inside, network, endpoint, &what);
            let ((), configured) = match helper {
                Some(h) => h.both(no_ipv6, configure),
                None => (no_ipv6(), configure()),
            };
            configured?;
            // The host end is only a port: no IPv6 of its own, so a
            // thousand of them do not each keep address and multicast
            // timers running in the host.
            // A port first, then hairpin mode and up: one send, carried
            // out in that order (`Netlink::batch`); the error names the
            // request that failed.
            kernel
                .host()?
                .batch(|nl| {
                    nl.set_master_without_ipv6(veth.as_str(), master)?;
                    nl.set_hairpin_and_up(veth.as_str(), true)
                })
                .map_err(kerr(format!(
                    "{what}: make {veth} a port of {br} in hairpin mode, and up"
                )))?;
            Ok(())
        })();
        if let Err(e) = rest {
            // Leave nothing half made: the peer goes with the host side.
            let _ = self.leave(kernel, network, endpoint, Some(sandbox));
            return Err(e);
        }
        Ok(())
    }

    fn leave(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: Option<&Netns>,
    ) -> Result<(), EngineError> {
        let what = super::endpoint_what(network, endpoint);
        // The veth goes even if the rules could not.
        let rules = kernel.firewall().and_then(|fw| {
            Ok(fw.remove_endpoint(
                &network_firewall(network)?,
                &endpoint_firewall(network, endpoint, true)?,
            )?)
        });
        delete_link_in_background_if_present(kernel, &veth_name(endpoint), sandbox, &what)?;
        rules
    }

    fn endpoint_oper_info(
        &self,
        network: &Network,
        endpoint: &Endpoint,
    ) -> BTreeMap<String, String> {
        let mut info = BTreeMap::from([
            ("bridge".to_string(), bridge_name(network)),
            ("host_interface".to_string(), veth_name(endpoint)),
            (
                "firewall_table".to_string(),
                format!("inet netloom-{}", &network.id[..8]),
            ),
        ]);
        if !endpoint.ports.is_empty() {
            let ports: Vec<String> = endpoint.ports.iter().map(|p| p.to_string()).collect();
            info.insert("published".to_string(), ports.join(" "));
        }
        info
    }

    fn program_external_connectivity(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
    ) -> Result<(), EngineError> {
        if endpoint.ports.is_empty()
            || self.published_on_join.as_deref() == Some(endpoint.id.as_str())
        {
            return Ok(());
        }
        kernel.firewall()?.add_endpoint(
            &network_firewall(network)?,
            &endpoint_firewall(network, endpoint, true)?,
        )?;
        Ok(())
    }

    fn revoke_external_connectivity(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
    ) -> Result<(), EngineError> {
        if endpoint.ports.is_empty() {
            return Ok(());
        }
        // Withdraws the port mappings and the port's guard facts together
        // (one transaction); `leave` follows and finds them gone.
        kernel.firewall()?.remove_endpoint(
            &network_firewall(network)?,
            &endpoint_firewall(network, endpoint, true)?,
        )?;
        Ok(())
    }

    fn check_endpoint(
        &self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
    ) -> Result<Vec<String>, EngineError> {
        let missing = kernel.firewall()?.missing_elements(
            &network_firewall(network)?,
            &endpoint_firewall(network, endpoint, true)?,
        )?;
        Ok(missing
            .iter()
            .map(|(set, element)| {
                format!(
                    "network {:?}: sandbox {}: firewall set {set} lacks {element:?}",
                    network.name, endpoint.sandbox
                )
            })
            .collect())
    }

    fn firewall_table(&self, network: &Network) -> Option<String> {
        Some(network.id[..8].to_string())
    }

    fn host_links(&self, network: &Network, endpoints: &[Endpoint]) -> Vec<String> {
        let mut v = vec![bridge_name(network)];
        v.extend(endpoints.iter().map(veth_name));
        v
    }
}

/// `10.1.0.2/24` → (10.1.0.2, 24).
pub fn lease_prefix(text: &str) -> Result<(IpAddr, u8), EngineError> {
    let c = text
        .split_once('/')
        .and_then(|(a, l)| Some((a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?)));
    c.ok_or_else(|| {
        ModelError::Malformed {
            what: "lease".into(),
            value: text.into(),
            why: "expected ADDRESS/LENGTH".into(),
        }
        .into()
    })
}
