//! The ipvlan driver: each endpoint is an ipvlan on a host interface (the
//! parent, `-o parent=IF`), created directly inside the sandbox. Unlike a
//! macvlan, every ipvlan shares the parent's MAC address (the endpoint's
//! recorded MAC is not used); the parent tells its ipvlans apart by IP.
//!
//! Options: `parent` (required; it must exist when the network is made),
//! `mode` = `l2` (default: the sandbox does ARP/ND on the parent's segment,
//! default route via the network's gateway), `l3` or `l3s` (routed by the
//! parent: no broadcast, no neighbours, default route straight onto the
//! interface), and `mtu`.
//!
//! Kernels without ipvlan (this machine's, for one) are detected when the
//! network is made, so it is refused up front with an error that names the
//! missing feature; a join that still meets the missing feature says the
//! same. netloom makes nothing in the host namespace, and `--publish` is
//! refused: a sandbox is reached at its own address.

use std::collections::BTreeMap;

use netloom_kernel::{IpvlanMode, LinkSpec, Netns};
use netloom_model::{Endpoint, ModelError, Network};

use super::bridge::mtu;
use super::macvlan::{
    configure_inside, create_error, parent_index, parent_option, refuse_ports, remove_inside,
    require_link_kind, require_shared, WayOut,
};
use crate::driver::{check_options, Driver};
use crate::kernel::Kernel;
use crate::EngineError;

pub struct IpvlanDriver;

/// The `mode` option.
fn ipvlan_mode(network: &Network) -> Result<IpvlanMode, EngineError> {
    match network.options.get("mode").map(String::as_str) {
        None | Some("l2") => Ok(IpvlanMode::L2),
        Some("l3") => Ok(IpvlanMode::L3),
        Some("l3s") => Ok(IpvlanMode::L3s),
        Some(other) => Err(ModelError::Invalid {
            object: format!("network {:?}", network.name),
            why: format!("ipvlan mode {other:?} does not exist"),
            fix: "give -o mode=l2, l3 or l3s".into(),
        }
        .into()),
    }
}

impl Driver for IpvlanDriver {
    fn name(&self) -> &'static str {
        "ipvlan"
    }

    fn validate(&self, network: &Network) -> Result<(), EngineError> {
        check_options("ipvlan", network, &["parent", "mode", "mtu"])?;
        require_shared("ipvlan", network)?;
        parent_option("ipvlan", network)?;
        ipvlan_mode(network)?;
        mtu(network)?;
        Ok(())
    }

    fn create_network(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
    ) -> Result<(), EngineError> {
        require_link_kind("ipvlan", network)?;
        parent_index(kernel, "ipvlan", network)?;
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
        // The ipvlan is made at join, directly into the sandbox.
        refuse_ports("ipvlan", network, endpoint)
    }

    fn join(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Netns,
    ) -> Result<(), EngineError> {
        let what = super::endpoint_what(network, endpoint);
        let parent = parent_option("ipvlan", network)?;
        let parent_idx = parent_index(kernel, "ipvlan", network)?;
        let mode = ipvlan_mode(network)?;
        let mut spec = LinkSpec::new(&endpoint.ifname).netns(sandbox);
        if let Some(m) = mtu(network)? {
            spec = spec.mtu(m);
        }
        kernel
            .host()?
            .create_ipvlan(&spec, parent_idx, mode)
            .map_err(|e| create_error(&what, "ipvlan", endpoint, parent, e))?;
        let way_out = match mode {
            IpvlanMode::L2 => WayOut::ViaGateway,
            IpvlanMode::L3 | IpvlanMode::L3s => WayOut::OnLink,
        };
        if let Err(e) = configure_inside(kernel, network, endpoint, sandbox, &what, way_out) {
            // Leave nothing half made: this join made the ipvlan.
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
        if sandbox.is_none() {
            return Ok(());
        }
        // Without its parent an ipvlan does not exist: nothing of ours is left.
        let Ok(parent_idx) = parent_index(kernel, "ipvlan", network) else {
            return Ok(());
        };
        // Ipvlans share their parent's MAC: ours is the ipvlan on our
        // parent that holds one of our addresses (an ipvlan of another
        // network on the same parent may carry the name after a failed join).
        let leases: Vec<String> = endpoint.leases.iter().map(|l| l.address.clone()).collect();
        remove_inside(kernel, network, endpoint, sandbox, |nl, link| {
            link.kind.as_deref() == Some("ipvlan")
                && link.parent == Some(parent_idx)
                && nl.list_addresses(Some(link.index)).is_ok_and(|addrs| {
                    addrs.iter().any(|a| {
                        leases.contains(&format!("{}/{}", a.prefix.addr(), a.prefix.prefix_len()))
                    })
                })
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
        let mode = network.options.get("mode").map_or("l2", String::as_str);
        info.insert("ipvlan_mode".to_string(), mode.to_string());
        info.insert(
            "mac".to_string(),
            "the parent's (ipvlans share it)".to_string(),
        );
        info
    }

    fn host_links(&self, _: &Network, _: &[Endpoint]) -> Vec<String> {
        // The ipvlans live in the sandboxes; the parent is the user's.
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netloom_model::Mode;

    fn network(options: &[(&str, &str)], mode: Mode) -> Network {
        crate::drivers::test_network("l3net", "ipvlan", "10.72.0.0/24", options, mode)
    }

    #[test]
    fn validate_needs_a_parent_and_knows_the_modes() {
        let d = IpvlanDriver;
        for mode in ["l2", "l3", "l3s"] {
            let net = network(&[("parent", "eth0"), ("mode", mode)], Mode::Shared);
            assert!(d.validate(&net).is_ok(), "{mode}");
        }
        let e = d
            .validate(&network(&[], Mode::Shared))
            .unwrap_err()
            .to_string();
        assert!(e.contains("driver ipvlan needs the option parent"), "{e}");
        let e = d
            .validate(&network(
                &[("parent", "eth0"), ("mode", "bridge")],
                Mode::Shared,
            ))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"bridge\"") && e.contains("l2, l3 or l3s"),
            "{e}"
        );
        let e = d
            .validate(&network(
                &[("parent", "eth0"), ("isolate", "true")],
                Mode::Shared,
            ))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no option \"isolate\""), "{e}");
        assert!(d
            .validate(&network(&[("parent", "eth0")], Mode::Pooled))
            .is_err());
        assert!(d
            .host_links(&network(&[("parent", "eth0")], Mode::Shared), &[])
            .is_empty());
    }

    #[test]
    fn published_ports_are_refused_before_anything_is_made() {
        let net = network(&[("parent", "eth0")], Mode::Shared);
        let mut ep = Endpoint {
            id: "cd".repeat(32),
            network: "l3net".into(),
            sandbox: "a".into(),
            sandbox_inode: 1,
            ifname: "eth0".into(),
            host_ifname: None,
            mac: "02:00:00:00:00:01".into(),
            aliases: vec![],
            ports: vec![],
            state: netloom_model::EndpointState::Creating,
            container_id: None,
            leases: vec![],
        };
        // No kernel access happens in create_endpoint.
        let mut kernel = Kernel::default();
        assert!(IpvlanDriver.create_endpoint(&mut kernel, &net, &ep).is_ok());
        ep.ports = netloom_model::endpoint::parse_publish("8080:80").unwrap();
        let e = IpvlanDriver
            .create_endpoint(&mut kernel, &net, &ep)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("network \"l3net\": sandbox a: ipvlan endpoints sit on"),
            "{e}"
        );
        assert!(e.contains("--publish 8080:80/tcp"), "{e}");
    }
}
