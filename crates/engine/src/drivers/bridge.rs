//! The bridge driver: a Linux bridge per network in the host namespace,
//! holding the gateway addresses; a veth pair per endpoint, its host side
//! enslaved to the bridge and its peer created directly inside the sandbox.
//! NAT, published ports, isolation and anti-spoofing are nftables rules of
//! the network ([`crate::firewall`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use netloom_kernel::{AddressOptions, IpPrefix, LinkSpec, MacAddr, Netns, Route};
use netloom_model::endpoint::parse_mac;
use netloom_model::{Endpoint, Network};

use crate::driver::{check_options, Driver};
use crate::kernel::Kernel;
use crate::EngineError;

pub struct BridgeDriver;

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
            _ => Err(netloom_model::ModelError::Invalid {
                object: format!("network {:?}", network.name),
                why: format!("MTU {v:?} is not a number from 68 to 65535"),
                fix: "give e.g. --mtu 1450".into(),
            }
            .into()),
        },
    }
}

/// Whether the network is isolated from other netloom networks (default yes).
pub fn isolated(network: &Network) -> Result<bool, EngineError> {
    match network.options.get("isolate").map(String::as_str) {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(netloom_model::ModelError::Invalid {
            object: format!("network {:?}", network.name),
            why: format!("isolate={v:?} is not true or false"),
            fix: "give -o isolate=true or -o isolate=false".into(),
        }
        .into()),
    }
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

impl Driver for BridgeDriver {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn validate(&self, network: &Network) -> Result<(), EngineError> {
        check_options("bridge", network, &["mtu", "isolate"])?;
        if network.mode == netloom_model::Mode::Pooled {
            return Err(netloom_model::ModelError::Invalid {
                object: format!("network {:?}", network.name),
                why: "the bridge driver shares each subnet among its endpoints; it has no pooled mode".into(),
                fix: "drop --mode pooled (routed, per-endpoint gateways are the ptp driver's)".into(),
            }
            .into());
        }
        mtu(network)?;
        isolated(network)?;
        Ok(())
    }

    fn create_network(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
    ) -> Result<(), EngineError> {
        let br = bridge_name(network);
        let host = kernel.host()?;
        let mut spec = LinkSpec::new(&br).up();
        if let Some(m) = mtu(network)? {
            spec = spec.mtu(m);
        }
        host.create_bridge(&spec).map_err(kerr(format!(
            "network {:?}: create bridge {br}",
            network.name
        )))?;
        let index = host.link_index(&br).map_err(kerr(format!(
            "network {:?}: find bridge {br}",
            network.name
        )))?;
        for p in gateway_prefixes(network) {
            host.add_address(index, p, AddressOptions::nodad())
                .map_err(kerr(format!(
                    "network {:?}: add gateway {}/{} to {br}",
                    network.name,
                    p.addr(),
                    p.prefix_len()
                )))?;
        }
        let here = Netns::current().map_err(kerr("open the host namespace".into()))?;
        let mut sysctls = vec![("net.ipv4.ip_forward", "1")];
        if network
            .subnets
            .iter()
            .any(|s| s.subnet.family() == netloom_model::Family::V6)
        {
            sysctls.push(("net.ipv6.conf.all.forwarding", "1"));
        }
        here.write_sysctls(&sysctls).map_err(kerr(format!(
            "network {:?}: enable forwarding",
            network.name
        )))?;
        Ok(())
    }

    fn delete_network(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
    ) -> Result<(), EngineError> {
        let br = bridge_name(network);
        match kernel.host()?.delete_link(br.as_str()) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(EngineError::kernel(
                &format!("network {:?}: delete bridge {br}", network.name),
                e,
            )),
        }
    }

    fn create_endpoint(
        &mut self,
        _: &mut Kernel,
        _: &Network,
        _: &Endpoint,
    ) -> Result<(), EngineError> {
        // The veth is made at join, directly into the sandbox.
        Ok(())
    }

    fn delete_endpoint(
        &mut self,
        _: &mut Kernel,
        _: &Network,
        _: &Endpoint,
    ) -> Result<(), EngineError> {
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
        let what = format!("network {:?}: sandbox {}", network.name, endpoint.sandbox);
        let mac = MacAddr(parse_mac(&endpoint.mac)?);
        let mtu = mtu(network)?;
        {
            let host = kernel.host()?;
            let master = host.link_index(&br).map_err(kerr(format!(
                "{what}: find bridge {br} (is the network's bridge gone? `netloom check` tells)"
            )))?;
            let mut outside = LinkSpec::new(&veth).master(master).up();
            let mut inside = LinkSpec::new(&endpoint.ifname).netns(sandbox).mac(mac);
            if let Some(m) = mtu {
                outside = outside.mtu(m);
                inside = inside.mtu(m);
            }
            host.create_veth(&outside, &inside).map_err(kerr(format!(
                "{what}: create veth {veth} with peer {}",
                endpoint.ifname
            )))?;
        }
        let mut nl = kernel.inside(sandbox)?;
        let configure = (|| -> Result<(), EngineError> {
            let err = |step: &str| kerr(format!("{what}: {step}"));
            let lo = nl.link_index("lo").map_err(err("find lo"))?;
            nl.set_up(lo, true).map_err(err("bring lo up"))?;
            let idx = nl
                .link_index(&endpoint.ifname)
                .map_err(err("find the interface"))?;
            for lease in &endpoint.leases {
                let (ip, len) = lease_prefix(&lease.address)?;
                let p = IpPrefix::new(ip, len).expect("lease prefixes are valid");
                nl.add_address(idx, p, AddressOptions::nodad())
                    .map_err(err(&format!("add address {}", lease.address)))?;
            }
            nl.set_up(idx, true)
                .map_err(err(&format!("bring {} up", endpoint.ifname)))?;
            if !network.internal {
                for lease in &endpoint.leases {
                    if let Some(gw) = lease.gateway {
                        match nl.add_route(&Route::default_via(gw).dev(idx)) {
                            Ok(()) => {}
                            // Another interface already is the sandbox's way
                            // out for this family; the first one stays.
                            Err(e) if e.is_already_exists() => {}
                            Err(e) => return Err(err(&format!("add default route via {gw}"))(e)),
                        }
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = configure {
            // Leave nothing half made: the peer goes with the host side.
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
        let veth = veth_name(endpoint);
        match kernel.host()?.delete_link(veth.as_str()) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(EngineError::kernel(
                &format!(
                    "network {:?}: sandbox {}: delete veth {veth}",
                    network.name, endpoint.sandbox
                ),
                e,
            )),
        }
    }

    fn endpoint_oper_info(
        &self,
        network: &Network,
        endpoint: &Endpoint,
    ) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("bridge".to_string(), bridge_name(network)),
            ("host_interface".to_string(), veth_name(endpoint)),
        ])
    }

    fn program_external_connectivity(
        &mut self,
        _: &mut Kernel,
        _: &Network,
        _: &Endpoint,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    fn revoke_external_connectivity(
        &mut self,
        _: &mut Kernel,
        _: &Network,
        _: &Endpoint,
    ) -> Result<(), EngineError> {
        Ok(())
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
        netloom_model::ModelError::Malformed {
            what: "lease".into(),
            value: text.into(),
            why: "expected ADDRESS/LENGTH".into(),
        }
        .into()
    })
}
