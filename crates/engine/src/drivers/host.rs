//! The host driver: the sandbox shares nothing with a network of its own.
//! Connecting a sandbox to a host network makes no interface, no address,
//! no route and no rule, in the sandbox or on the host. As with Docker's
//! host network, this is meaningful only for runtimes that run the
//! container in the host's own namespace (connect `pid:N` of such a
//! process, or the host's namespace file): it then uses the host's
//! interfaces as they are. A sandbox with a namespace of its own connected
//! to a host network keeps only what it had; netloom warns about that.
//!
//! Semantics of the records:
//! - The network still needs `--subnet` today (the model requires one per
//!   network). Nothing is made from it: the subnet is bookkeeping, the
//!   address each endpoint is given from it is recorded but configured
//!   nowhere. Give a subnet no other network uses, with room for one
//!   address per connection (a /24 holds 253).
//! - Only the shared mode exists, and a host network cannot be `--internal`
//!   (it is the host's own connectivity); it takes no options (no `--mtu`:
//!   there is no interface to size).
//! - `--publish` is refused: the host's ports are the container's.
//! - Connecting and disconnecting only add and remove the endpoint record;
//!   removal is trivially idempotent. `host_links` is empty.

use std::collections::BTreeMap;

use netloom_kernel::Netns;
use netloom_model::{Endpoint, Mode, ModelError, Network};

use crate::driver::{check_options, Driver};
use crate::kernel::Kernel;
use crate::EngineError;

pub struct HostDriver;

impl Driver for HostDriver {
    fn name(&self) -> &'static str {
        "host"
    }

    fn validate(&self, network: &Network) -> Result<(), EngineError> {
        let refuse = |why: &str, fix: &str| -> EngineError {
            ModelError::Invalid {
                object: format!("network {:?}", network.name),
                why: why.to_string(),
                fix: fix.to_string(),
            }
            .into()
        };
        if network.options.contains_key("mtu") {
            return Err(refuse(
                "the host driver makes no interface, so an MTU has nothing to apply to",
                "drop --mtu (the host's interfaces keep their own)",
            ));
        }
        check_options("host", network, &[])?;
        if network.internal {
            return Err(refuse(
                "a host network is the host's own connectivity; it cannot be internal",
                "drop --internal (for a network with no way out use --driver bridge --internal)",
            ));
        }
        if network.mode == Mode::Pooled {
            return Err(refuse(
                "the host driver makes no interfaces, so it has no routed (pooled) mode",
                "drop --mode pooled",
            ));
        }
        Ok(())
    }

    fn create_network(&mut self, _: &mut Kernel, _: &Network) -> Result<(), EngineError> {
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
        match endpoint.ports.first() {
            None => Ok(()),
            Some(port) => Err(ModelError::Invalid {
                object: super::endpoint_what(network, endpoint),
                why: format!("a host network uses the host's own ports; there is nothing to publish (--publish {port})"),
                fix: "connect without --publish".into(),
            }
            .into()),
        }
    }

    fn join(
        &mut self,
        _: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        _sandbox: &Netns,
    ) -> Result<(), EngineError> {
        let host_inode = Netns::current().and_then(|ns| ns.inode()).ok();
        if host_inode.is_some_and(|i| i != endpoint.sandbox_inode) {
            tracing::warn!(
                "network {:?}: sandbox {} has a network namespace of its own; a host network gives it no interface (it is meant for processes that run in the host's namespace)",
                network.name,
                endpoint.sandbox
            );
        }
        Ok(())
    }

    fn leave(
        &mut self,
        _: &mut Kernel,
        _: &Network,
        _: &Endpoint,
        _: Option<&Netns>,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    fn endpoint_oper_info(&self, _: &Network, endpoint: &Endpoint) -> BTreeMap<String, String> {
        let shares = Netns::current()
            .and_then(|ns| ns.inode())
            .map(|i| (i == endpoint.sandbox_inode).to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        BTreeMap::from([
            ("interface".to_string(), "none (host network)".to_string()),
            ("in_host_namespace".to_string(), shares),
        ])
    }

    fn host_links(&self, _: &Network, _: &[Endpoint]) -> Vec<String> {
        Vec::new()
    }

    fn makes_sandbox_interface(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netloom_model::NetworkRequest;

    fn network(options: &[(&str, &str)], internal: bool, mode: Mode) -> Network {
        NetworkRequest {
            name: "hostnet".into(),
            driver: "host".into(),
            subnets: vec!["10.73.0.0/30".into()],
            internal,
            mode,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
        .validate("0123456789abcdef")
        .unwrap()
    }

    #[test]
    fn validate_refuses_what_has_no_meaning_without_an_interface() {
        let d = HostDriver;
        assert!(d.validate(&network(&[], false, Mode::Shared)).is_ok());
        let e = d
            .validate(&network(&[("mtu", "1400")], false, Mode::Shared))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no interface") && e.contains("drop --mtu"),
            "{e}"
        );
        let e = d
            .validate(&network(&[("parent", "eth0")], false, Mode::Shared))
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes no -o options"), "{e}");
        let e = d
            .validate(&network(&[], true, Mode::Shared))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be internal"), "{e}");
        let e = d
            .validate(&network(&[], false, Mode::Pooled))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pooled"), "{e}");
        assert!(d
            .host_links(&network(&[], false, Mode::Shared), &[])
            .is_empty());
    }
}
