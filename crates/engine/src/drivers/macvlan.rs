//! The macvlan driver: each endpoint is a macvlan on a host interface (the
//! parent, `-o parent=IF`), created directly inside the sandbox, so the
//! sandbox appears on the parent's Ethernet segment with a MAC address of
//! its own.
//!
//! Options: `parent` (required; it must exist when the network is made),
//! `mode` = `bridge` (default: siblings on one parent talk directly),
//! `private` (siblings cannot talk at all), `vepa` (sibling traffic goes out
//! to the external switch and back), `passthru` (one endpoint takes the
//! parent over), and `mtu` (at most the parent's).
//!
//! Addresses come from the lease (shared mode only: the subnet is the
//! parent's segment); the default route goes via the network's gateway,
//! which is a router on that segment (`--gateway`, default the subnet's
//! first address), unless the network is internal. netloom makes nothing
//! in the host namespace: the parent belongs to the user. As with every
//! macvlan, the host itself cannot reach its sandboxes through the parent.
//! `--publish` is refused: a sandbox is reached at its own address.
//!
//! The helpers here (`parent`, inside configuration, removal) serve the
//! ipvlan driver too.

use std::collections::BTreeMap;

use netloom_kernel::{
    AddressOptions, IpPrefix, LinkSpec, MacAddr, MacvlanMode, Netlink, Netns, Route,
};
use netloom_model::endpoint::{check_ifname, parse_mac};
use netloom_model::{Endpoint, Mode, ModelError, Network};

use super::bridge::{lease_prefix, mtu};
use crate::driver::{check_options, Driver};
use crate::kernel::Kernel;
use crate::EngineError;

pub struct MacvlanDriver;

fn kerr(action: String) -> impl FnOnce(netloom_kernel::Error) -> EngineError {
    move |e| EngineError::kernel(&action, e)
}

/// The host's interfaces (but `lo`), comma separated, for error messages;
/// empty when they cannot be listed.
pub(crate) fn host_interfaces(nl: Option<&mut Netlink>) -> String {
    let mut opened;
    let nl = match nl {
        Some(nl) => nl,
        None => match Netlink::open_current() {
            Ok(n) => {
                opened = n;
                &mut opened
            }
            Err(_) => return String::new(),
        },
    };
    nl.list_links()
        .map(|links| {
            links
                .into_iter()
                .map(|l| l.name)
                .filter(|n| n != "lo")
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn interface_hint(list: &str) -> String {
    if list.is_empty() {
        "this host has no interface but lo: make one first".into()
    } else {
        format!("this host's interfaces: {list}")
    }
}

/// The `parent` option of a macvlan or ipvlan network, checked to be there
/// and to be an interface name.
pub(crate) fn parent_option<'a>(
    driver: &str,
    network: &'a Network,
) -> Result<&'a str, EngineError> {
    let Some(parent) = network.options.get("parent") else {
        return Err(ModelError::Invalid {
            object: format!("network {:?}", network.name),
            why: format!(
                "driver {driver} needs the option parent (the host interface its links sit on)"
            ),
            fix: format!(
                "give -o parent=IF ({})",
                interface_hint(&host_interfaces(None))
            ),
        }
        .into());
    };
    check_ifname(parent)?;
    Ok(parent)
}

/// The parent's index in the host namespace; an error naming the network,
/// the parent and the host's interfaces when it does not exist.
pub(crate) fn parent_index(
    kernel: &mut Kernel,
    driver: &str,
    network: &Network,
) -> Result<u32, EngineError> {
    let parent = parent_option(driver, network)?;
    let host = kernel.host()?;
    match host.get_link(parent) {
        Ok(Some(link)) => Ok(link.index),
        Ok(None) => Err(ModelError::Invalid {
            object: format!("network {:?}", network.name),
            why: format!("its parent interface {parent:?} does not exist on this host"),
            fix: format!(
                "give -o parent= an existing interface ({})",
                interface_hint(&host_interfaces(Some(host)))
            ),
        }
        .into()),
        Err(e) => Err(EngineError::kernel(
            &format!(
                "network {:?}: look up parent interface {parent:?}",
                network.name
            ),
            e,
        )),
    }
}

/// Refuses up front when the kernel cannot make links of `kind`.
pub(crate) fn require_link_kind(kind: &str, network: &Network) -> Result<(), EngineError> {
    let needed_by = format!("network {:?}: driver {kind}", network.name);
    match netloom_kernel::supports_link_kind(kind) {
        Ok(true) => Ok(()),
        Ok(false) => Err(EngineError::MissingFeature {
            feature: kind.to_string(),
            needed_by,
        }),
        Err(e) => Err(EngineError::kernel(
            &format!("{needed_by}: ask the kernel whether it has {kind}"),
            e,
        )),
    }
}

/// Refuses pooled (routed) mode for drivers that put endpoints on a shared
/// segment.
pub(crate) fn require_shared(driver: &str, network: &Network) -> Result<(), EngineError> {
    if network.mode == Mode::Pooled {
        return Err(ModelError::Invalid {
            object: format!("network {:?}", network.name),
            why: format!("driver {driver} puts endpoints on the parent's segment, where they share the subnet; it has no pooled mode"),
            fix: "drop --mode pooled (routed, per-endpoint gateways are the ptp driver's)".into(),
        }
        .into());
    }
    Ok(())
}

/// Refuses published ports: an endpoint on the parent's segment is reached
/// at its own address, there is no host port in front of it.
pub(crate) fn refuse_ports(
    driver: &str,
    network: &Network,
    endpoint: &Endpoint,
) -> Result<(), EngineError> {
    match endpoint.ports.first() {
        None => Ok(()),
        Some(port) => Err(ModelError::Invalid {
            object: super::endpoint_what(network, endpoint),
            why: format!("{driver} endpoints sit on the parent's network itself, each reached at its own address; there is no host port to publish (--publish {port})"),
            fix: "connect without --publish and use the endpoint's address".into(),
        }
        .into()),
    }
}

/// Creating a link failed: the error, with a hint when the name is taken.
pub(crate) fn create_error(
    what: &str,
    kind: &str,
    endpoint: &Endpoint,
    parent: &str,
    e: netloom_kernel::Error,
) -> EngineError {
    let hint = if e.is_already_exists() {
        format!(
            " (the sandbox already has an interface {}: choose another name with --ifname)",
            endpoint.ifname
        )
    } else {
        String::new()
    };
    EngineError::kernel(
        &format!(
            "{what}: create {kind} {} on parent {parent}{hint}",
            endpoint.ifname
        ),
        e,
    )
}

/// How the sandbox leaves its subnet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum WayOut {
    /// `default via GATEWAY` (an Ethernet segment with a router on it).
    ViaGateway,
    /// `default dev IF` (ipvlan L3: no neighbours, the parent routes).
    OnLink,
}

/// Sandbox side of a link made inside it: lo up, the lease addresses, the
/// interface up, the default routes (unless the network is internal).
pub(crate) fn configure_inside(
    kernel: &mut Kernel,
    network: &Network,
    endpoint: &Endpoint,
    sandbox: &Netns,
    what: &str,
    way_out: WayOut,
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
    for lease in &endpoint.leases {
        let (ip, len) = lease_prefix(&lease.address)?;
        let p = IpPrefix::new(ip, len).expect("lease prefixes are valid");
        nl.add_address(idx, p, AddressOptions::nodad())
            .map_err(err(format!("add address {}", lease.address)))?;
    }
    nl.set_up(idx, true)
        .map_err(err(format!("bring {} up", endpoint.ifname)))?;
    if network.internal {
        return Ok(());
    }
    for lease in &endpoint.leases {
        let route = match (way_out, lease.gateway) {
            (WayOut::ViaGateway, Some(gw)) => Route::default_via(gw).dev(idx),
            (WayOut::ViaGateway, None) => continue,
            (WayOut::OnLink, _) => {
                let dst = match lease_prefix(&lease.address)?.0 {
                    std::net::IpAddr::V4(_) => IpPrefix::default_v4(),
                    std::net::IpAddr::V6(_) => IpPrefix::default_v6(),
                };
                Route::on_link(dst, idx)
            }
        };
        match nl.add_route(&route) {
            Ok(()) => {}
            // Another interface already is the sandbox's way out for this
            // family; the first one stays.
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(err(format!("add default route on {}", endpoint.ifname))(e)),
        }
    }
    Ok(())
}

/// Deletes the endpoint's interface inside the sandbox if it is there and
/// `ours` recognises it as the one netloom made (a failed join may have
/// stopped at an interface of that name that belongs to someone else).
/// Nothing to do when the sandbox is gone: its links went with it.
pub(crate) fn remove_inside(
    kernel: &mut Kernel,
    network: &Network,
    endpoint: &Endpoint,
    sandbox: Option<&Netns>,
    ours: impl FnOnce(&mut Netlink, &netloom_kernel::Link) -> bool,
) -> Result<(), EngineError> {
    let Some(sandbox) = sandbox else {
        return Ok(());
    };
    let what = format!(
        "network {:?}: sandbox {}: delete {}",
        network.name, endpoint.sandbox, endpoint.ifname
    );
    let mut nl = kernel.inside(sandbox)?;
    let link = match nl.get_link(endpoint.ifname.as_str()) {
        Ok(Some(link)) => link,
        Ok(None) => return Ok(()),
        Err(e) => return Err(EngineError::kernel(&what, e)),
    };
    if !ours(&mut nl, &link) {
        return Ok(());
    }
    match nl.delete_link(link.index) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(EngineError::kernel(&what, e)),
    }
}

/// The `mode` option.
fn macvlan_mode(network: &Network) -> Result<MacvlanMode, EngineError> {
    match network.options.get("mode").map(String::as_str) {
        None | Some("bridge") => Ok(MacvlanMode::Bridge),
        Some("private") => Ok(MacvlanMode::Private),
        Some("vepa") => Ok(MacvlanMode::Vepa),
        Some("passthru") => Ok(MacvlanMode::Passthru),
        Some(other) => Err(ModelError::Invalid {
            object: format!("network {:?}", network.name),
            why: format!("macvlan mode {other:?} does not exist"),
            fix: "give -o mode=bridge, private, vepa or passthru".into(),
        }
        .into()),
    }
}

impl Driver for MacvlanDriver {
    fn name(&self) -> &'static str {
        "macvlan"
    }

    fn validate(&self, network: &Network) -> Result<(), EngineError> {
        check_options("macvlan", network, &["parent", "mode", "mtu"])?;
        require_shared("macvlan", network)?;
        parent_option("macvlan", network)?;
        macvlan_mode(network)?;
        mtu(network)?;
        Ok(())
    }

    fn create_network(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
    ) -> Result<(), EngineError> {
        require_link_kind("macvlan", network)?;
        parent_index(kernel, "macvlan", network)?;
        Ok(())
    }

    fn delete_network(&mut self, _: &mut Kernel, _: &Network) -> Result<(), EngineError> {
        Ok(())
    }

    fn create_endpoint(
        &mut self,
        _: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
    ) -> Result<(), EngineError> {
        // The macvlan is made at join, directly into the sandbox.
        refuse_ports("macvlan", network, endpoint)
    }

    fn join(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Netns,
    ) -> Result<(), EngineError> {
        let what = super::endpoint_what(network, endpoint);
        let parent = parent_option("macvlan", network)?;
        let parent_idx = parent_index(kernel, "macvlan", network)?;
        let mode = macvlan_mode(network)?;
        let mac = MacAddr(parse_mac(&endpoint.mac)?);
        let mut spec = LinkSpec::new(&endpoint.ifname).netns(sandbox).mac(mac);
        if let Some(m) = mtu(network)? {
            spec = spec.mtu(m);
        }
        kernel
            .host()?
            .create_macvlan(&spec, parent_idx, mode)
            .map_err(|e| create_error(&what, "macvlan", endpoint, parent, e))?;
        if let Err(e) = configure_inside(
            kernel,
            network,
            endpoint,
            sandbox,
            &what,
            WayOut::ViaGateway,
        ) {
            // Leave nothing half made: this join made the macvlan.
            let _ = remove_inside(kernel, network, endpoint, Some(sandbox), |_, _| true);
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
        let mac = parse_mac(&endpoint.mac).ok().map(MacAddr);
        remove_inside(kernel, network, endpoint, sandbox, |_, link| {
            link.kind.as_deref() == Some("macvlan") && link.mac.is_some() && link.mac == mac
        })
    }

    fn endpoint_oper_info(
        &self,
        network: &Network,
        _endpoint: &Endpoint,
    ) -> BTreeMap<String, String> {
        let mut info = BTreeMap::new();
        if let Some(p) = network.options.get("parent") {
            info.insert("parent".to_string(), p.clone());
        }
        let mode = network.options.get("mode").map_or("bridge", String::as_str);
        info.insert("macvlan_mode".to_string(), mode.to_string());
        info
    }

    fn host_links(&self, _: &Network, _: &[Endpoint]) -> Vec<String> {
        // The macvlans live in the sandboxes; the parent is the user's.
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(driver: &str, options: &[(&str, &str)], mode: Mode) -> Network {
        crate::drivers::test_network("lan", driver, "10.71.0.0/24", options, mode)
    }

    #[test]
    fn validate_needs_a_parent_and_knows_the_modes() {
        let d = MacvlanDriver;
        for mode in ["bridge", "private", "vepa", "passthru"] {
            let net = network(
                "macvlan",
                &[("parent", "eth0"), ("mode", mode)],
                Mode::Shared,
            );
            assert!(d.validate(&net).is_ok(), "{mode}");
        }
        let e = d
            .validate(&network("macvlan", &[], Mode::Shared))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("network \"lan\": driver macvlan needs the option parent")
                && e.contains("-o parent=IF"),
            "{e}"
        );
        let e = d
            .validate(&network(
                "macvlan",
                &[("parent", "eth0"), ("mode", "l2")],
                Mode::Shared,
            ))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"l2\"") && e.contains("bridge, private, vepa or passthru"),
            "{e}"
        );
        let e = d
            .validate(&network(
                "macvlan",
                &[("parent", "eth0"), ("vni", "3")],
                Mode::Shared,
            ))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no option \"vni\"") && e.contains("parent, mode, mtu"),
            "{e}"
        );
        let e = d
            .validate(&network("macvlan", &[("parent", "a/b")], Mode::Shared))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"a/b\""), "{e}");
        let e = d
            .validate(&network("macvlan", &[("parent", "eth0")], Mode::Pooled))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no pooled mode"), "{e}");
    }

    #[test]
    fn keeps_no_host_links() {
        let net = network("macvlan", &[("parent", "eth0")], Mode::Shared);
        assert!(MacvlanDriver.host_links(&net, &[]).is_empty());
        let info = MacvlanDriver.endpoint_oper_info(
            &net,
            &Endpoint {
                id: "ab".repeat(32),
                network: "lan".into(),
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
            },
        );
        assert_eq!(info["parent"], "eth0");
        assert_eq!(info["macvlan_mode"], "bridge");
    }
}
