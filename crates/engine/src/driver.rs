//! The network-driver interface (seeds/003 in Rust).
//!
//! A driver realises networks and endpoints in the kernel. The engine owns
//! the state: it records intent, allocates addresses, and calls the driver;
//! drivers hold no state of their own beyond what they can derive from the
//! network and endpoint records, so any process can finish or undo what
//! another began.
//!
//! Endpoint creation and joining a sandbox are separate steps, as in the
//! Docker remote-driver protocol: an endpoint may exist before its sandbox.

use std::collections::BTreeMap;

use netloom_kernel::Netns;
use netloom_model::{Endpoint, Mode, Network};

use crate::kernel::Kernel;
use crate::EngineError;

/// Where a driver's state and connectivity reach (seeds/003 `Capability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This host only.
    Local,
    /// Across hosts.
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    pub data_scope: Scope,
    pub connectivity_scope: Scope,
}

/// A network driver. Every removal is idempotent: removing what is already
/// gone succeeds, so an interrupted removal can simply be run again. The
/// endpoint and external-connectivity hooks default to doing nothing, for
/// drivers that have nothing to do there.
/// `Sync`: the engine may make an endpoint's links on a second thread
/// (see [`Driver::make_links`]).
pub trait Driver: Sync {
    /// The name users give with `--driver`.
    fn name(&self) -> &'static str;

    fn capability(&self) -> Capability {
        Capability {
            data_scope: Scope::Local,
            connectivity_scope: Scope::Local,
        }
    }

    /// The mode the driver's networks must use, if it forces one (pooled
    /// for routed drivers); `None` keeps what the user asked for.
    fn mode(&self) -> Option<Mode> {
        None
    }

    /// Checks the driver's options (`-o key=value`) before anything is
    /// recorded or made.
    fn validate(&self, network: &Network) -> Result<(), EngineError>;

    /// Makes the network's kernel objects (bridge, gateway addresses, rules).
    fn create_network(&mut self, kernel: &mut Kernel, network: &Network)
        -> Result<(), EngineError>;

    /// Removes the network's kernel objects.
    fn delete_network(&mut self, kernel: &mut Kernel, network: &Network)
        -> Result<(), EngineError>;

    /// Prepares an endpoint whose addresses and MAC are already decided.
    fn create_endpoint(
        &mut self,
        _kernel: &mut Kernel,
        _network: &Network,
        _endpoint: &Endpoint,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Removes what `create_endpoint` made.
    fn delete_endpoint(
        &mut self,
        _kernel: &mut Kernel,
        _network: &Network,
        _endpoint: &Endpoint,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// The part of joining that needs no addresses (the bridge driver's
    /// veth pair), given the endpoint as it is before they are allocated.
    /// Called on a separate instance of the driver: an engine that keeps a
    /// helper thread (see [`crate::overlap`]) makes the links there while
    /// it records the endpoint and runs [`Driver::prepare_join`].
    /// `create_endpoint` and `join` follow; `join` does the rest, and
    /// undoes this too when it fails.
    fn make_links(
        &self,
        _kernel: &mut Kernel,
        _network: &Network,
        _endpoint: &Endpoint,
        _sandbox: &Netns,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// The part of joining that needs the endpoint's addresses but not its
    /// links: firewall facts, and opening what `join` will use in the
    /// sandbox ([`Kernel::open_inside_ahead`]). Runs once the endpoint is
    /// recorded, possibly while [`Driver::make_links`] runs on another
    /// thread: `kernel` then holds the firewall only. Undone by `leave`.
    fn prepare_join(
        &mut self,
        _kernel: &mut Kernel,
        _network: &Network,
        _endpoint: &Endpoint,
        _sandbox: &Netns,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Undoes [`Driver::make_links`] alone, when the endpoint could not be
    /// recorded. Nothing else of the endpoint's exists then; in particular
    /// no rule may be touched, as another endpoint may hold what this one
    /// asked for.
    fn unmake_links(
        &self,
        _kernel: &mut Kernel,
        _network: &Network,
        _endpoint: &Endpoint,
        _sandbox: &Netns,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Puts the endpoint's interface into the sandbox, addressed and routed.
    fn join(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Netns,
    ) -> Result<(), EngineError>;

    /// Takes the endpoint's interface out of the sandbox. `sandbox` is
    /// `None` when the sandbox no longer exists.
    fn leave(
        &mut self,
        kernel: &mut Kernel,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: Option<&Netns>,
    ) -> Result<(), EngineError>;

    /// Operational facts about an endpoint, for `endpoint inspect`.
    fn endpoint_oper_info(
        &self,
        _network: &Network,
        _endpoint: &Endpoint,
    ) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Publishes the endpoint's ports (called after `join`).
    fn program_external_connectivity(
        &mut self,
        _kernel: &mut Kernel,
        _network: &Network,
        _endpoint: &Endpoint,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Withdraws what `program_external_connectivity` published.
    fn revoke_external_connectivity(
        &mut self,
        _kernel: &mut Kernel,
        _network: &Network,
        _endpoint: &Endpoint,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Names of the host-side links this driver keeps for the network and
    /// its endpoints, for `check` and `gc` (empty when it keeps none).
    fn host_links(&self, network: &Network, endpoints: &[Endpoint]) -> Vec<String>;

    /// The host-side link of one endpoint, if the driver makes one.
    fn host_ifname(&self, network: &Network, endpoint: &Endpoint) -> Option<String> {
        let net_links = self.host_links(network, &[]);
        self.host_links(network, std::slice::from_ref(endpoint))
            .into_iter()
            .find(|l| !net_links.contains(l))
    }

    /// Differences between an endpoint's record and the driver's own kernel
    /// state beyond links and addresses (e.g. firewall elements), one line
    /// each, for `netloom check`.
    fn check_endpoint(
        &self,
        _kernel: &mut Kernel,
        _network: &Network,
        _endpoint: &Endpoint,
    ) -> Result<Vec<String>, EngineError> {
        Ok(Vec::new())
    }

    /// The `id8` of the network's nftables table, if the driver keeps one.
    fn firewall_table(&self, _network: &Network) -> Option<String> {
        None
    }

    /// Whether joining puts an interface into the sandbox (checked by
    /// `netloom check`).
    fn makes_sandbox_interface(&self) -> bool {
        true
    }
}

/// Options a driver does not know: refused with the list it does know.
pub fn check_options(driver: &str, network: &Network, known: &[&str]) -> Result<(), EngineError> {
    for key in network.options.keys() {
        if !known.contains(&key.as_str()) {
            return Err(netloom_model::ModelError::Invalid {
                object: format!("network {:?}", network.name),
                why: format!("driver {driver} has no option {key:?}"),
                fix: if known.is_empty() {
                    format!("driver {driver} takes no -o options")
                } else {
                    format!("its options are: {}", known.join(", "))
                },
            }
            .into());
        }
    }
    Ok(())
}
