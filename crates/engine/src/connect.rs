//! Connecting sandboxes to networks, and taking them off again.
//!
//! Intent first: the endpoint record and its addresses are written in one
//! transaction (state `creating`) before the kernel is touched, and marked
//! `ready` after. A failure undoes every step, in reverse, and removes the
//! record; a crash leaves a `creating` or `removing` record for `gc`.

use std::net::IpAddr;

use netloom_model::endpoint::{check_ifname, format_mac, parse_mac};
use netloom_model::{Endpoint, EndpointState, ModelError, Network, PortMapping};

use crate::sandbox::SandboxRef;
use crate::{drivers, Engine, EngineError};

/// What `connect` may be told beyond network and sandbox.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Requested addresses, at most one per family.
    pub ips: Vec<IpAddr>,
    pub mac: Option<String>,
    pub ifname: Option<String>,
    pub aliases: Vec<String>,
    pub ports: Vec<PortMapping>,
    /// The container runtime's id of the container (CNI), kept in the
    /// endpoint record.
    pub container_id: Option<String>,
}

/// A locally administered unicast MAC derived from the endpoint id.
fn mac_for(id: &str) -> String {
    let mut mac = [0x02u8, 0, 0, 0, 0, 0];
    for (i, b) in mac.iter_mut().enumerate().skip(1) {
        *b = u8::from_str_radix(&id[i * 2..i * 2 + 2], 16).unwrap_or(0);
    }
    format_mac(&mac)
}

impl Engine {
    pub(crate) fn driver_of(
        &self,
        network: &Network,
    ) -> Result<Box<dyn crate::driver::Driver>, EngineError> {
        drivers::by_name(&network.driver).ok_or_else(|| {
            ModelError::Invalid {
                object: format!("network {:?}", network.name),
                why: format!(
                    "its driver {:?} is not built into this netloom",
                    network.driver
                ),
                fix: format!(
                    "use a netloom that has it; built in: {}",
                    drivers::NAMES.join(", ")
                ),
            }
            .into()
        })
    }

    /// Connects a sandbox to a network: addresses, interface, routes,
    /// published ports. All or nothing.
    pub fn connect(
        &mut self,
        network: &str,
        sandbox: &str,
        opts: &ConnectOptions,
    ) -> Result<Endpoint, EngineError> {
        self.get_ready();
        let net = self.store.network(network)?;
        self.connect_to(&net, sandbox, opts)
    }

    /// [`Engine::connect`] to a network the caller has just read from the
    /// store. Should it be gone meanwhile, recording the endpoint fails.
    /// A caller with an engine that keeps a helper thread calls
    /// [`Engine::get_ready`] first, as early as it can.
    pub fn connect_to(
        &mut self,
        net: &Network,
        sandbox: &str,
        opts: &ConnectOptions,
    ) -> Result<Endpoint, EngineError> {
        let mut driver = self.driver_of(net)?;
        let sref = SandboxRef::parse(sandbox)?;
        let ns = sref.open()?;
        let inode = ns
            .inode()
            .map_err(|e| EngineError::kernel(&format!("sandbox {sref}: read its namespace"), e))?;
        let ifname = match &opts.ifname {
            Some(n) => {
                check_ifname(n)?;
                n.clone()
            }
            None => self.free_ifname(inode)?,
        };
        let id = netloom_store::random_id()?;
        let mac = match &opts.mac {
            Some(m) => format_mac(&parse_mac(m)?),
            None => mac_for(&id),
        };
        for a in &opts.aliases {
            netloom_model::network::check_name("alias", a)?;
        }
        let mut ep = Endpoint {
            id,
            network: net.name.clone(),
            sandbox: sref.to_string(),
            sandbox_inode: inode,
            ifname,
            host_ifname: None,
            mac,
            aliases: opts.aliases.clone(),
            ports: opts.ports.clone(),
            state: EndpointState::Creating,
            container_id: opts.container_id.clone(),
            leases: Vec::new(),
        };
        ep.host_ifname = driver.host_ifname(net, &ep);

        // Intent first: the store records the endpoint and allocates its
        // addresses, then the kernel is touched. An engine that keeps a
        // helper thread (the service's) has it make the links, which need
        // no addresses, while this thread records the endpoint and
        // prepares the rest (its firewall facts): a crash between the two
        // leaves links with netloom names and no record, which `gc`
        // removes as it removes any such leftover.
        let maker = self.driver_of(net)?;
        let helper = self.kernel.helper();
        let mut lent = self.kernel.lend_firewall();
        let mut recorded = ep.clone();
        let (kernel, store) = (&mut self.kernel, &mut self.store);
        let mut links = || maker.make_links(kernel, net, &ep, &ns);
        let mut prepare = || {
            recorded.leases = match store.add_endpoint(&recorded, &opts.ips) {
                Ok(leases) => leases,
                Err(e) => return Prepared::NotRecorded(e.into()),
            };
            match driver.prepare_join(&mut lent, net, &recorded, &ns) {
                Ok(()) => Prepared::Done,
                Err(e) => Prepared::Recorded(e),
            }
        };
        let (made, prepared) = match helper {
            Some(helper) => helper.both(links, prepare),
            None => match prepare() {
                Prepared::Done => (links(), Prepared::Done),
                failed => (Ok(()), failed),
            },
        };
        self.kernel.take_back(lent);
        let mut ep = recorded;
        match (prepared, made) {
            (Prepared::Done, Ok(())) => {}
            // The store's refusal explains more (a clash, a full pool)
            // than what the kernel made of the same request. Only the
            // links are undone: the rules may be another endpoint's.
            (Prepared::NotRecorded(e), made) => {
                if made.is_ok() {
                    if let Err(undo) = maker.unmake_links(&mut self.kernel, net, &ep, &ns) {
                        tracing::warn!("{undo}; `netloom gc` removes what is left");
                    }
                }
                return Err(e);
            }
            (Prepared::Recorded(e), _) | (Prepared::Done, Err(e)) => {
                let _ = driver.leave(&mut self.kernel, net, &ep, Some(&ns));
                self.forget_endpoint(&ep);
                return Err(e);
            }
        }

        let kernel = &mut self.kernel;
        let made = (|| {
            driver.create_endpoint(kernel, net, &ep)?;
            driver.join(kernel, net, &ep, &ns)?;
            driver.program_external_connectivity(kernel, net, &ep)
        })();
        if let Err(e) = made {
            let _ = driver.revoke_external_connectivity(kernel, net, &ep);
            let _ = driver.leave(kernel, net, &ep, Some(&ns));
            let _ = driver.delete_endpoint(kernel, net, &ep);
            self.forget_endpoint(&ep);
            return Err(e);
        }
        self.store
            .set_endpoint_state(&ep.id, EndpointState::Ready)?;
        ep.state = EndpointState::Ready;
        tracing::info!(network = %net.name, sandbox = %ep.sandbox, endpoint = %&ep.id[..12], "connected");
        Ok(ep)
    }

    /// Drops the record of an endpoint whose connect failed.
    fn forget_endpoint(&mut self, ep: &Endpoint) {
        if let Err(undo) = self.store.remove_endpoint(&ep.id) {
            tracing::warn!(
                "could not forget endpoint {}: {undo}; `netloom gc` will",
                &ep.id[..12]
            );
        }
    }

    /// The first `ethN` the sandbox does not use for another endpoint.
    fn free_ifname(&mut self, inode: u64) -> Result<String, EngineError> {
        let used = self.store.sandbox_ifnames(inode)?;
        Ok((0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(n))
            .expect("some ethN is free"))
    }

    /// Endpoints of `network` in `sandbox` (matched by namespace, or by the
    /// name it was connected with when the namespace is gone).
    pub fn endpoints_in(
        &mut self,
        network: &str,
        sandbox: &str,
    ) -> Result<Vec<Endpoint>, EngineError> {
        let sref = SandboxRef::parse(sandbox)?;
        if let Some(inode) = sref.open().ok().and_then(|ns| ns.inode().ok()) {
            return Ok(self.store.sandbox_endpoints(network, inode)?);
        }
        // The namespace is gone: match by the name it was connected with.
        let name = sref.to_string();
        Ok(self
            .store
            .endpoints(Some(network))?
            .into_iter()
            .filter(|e| e.sandbox == name)
            .collect())
    }

    /// Disconnects a sandbox from a network (every interface it has there,
    /// or only `ifname`).
    pub fn disconnect(
        &mut self,
        network: &str,
        sandbox: &str,
        ifname: Option<&str>,
    ) -> Result<Vec<Endpoint>, EngineError> {
        let net = self.store.network(network)?;
        let eps: Vec<Endpoint> = self
            .endpoints_in(&net.name, sandbox)?
            .into_iter()
            .filter(|e| ifname.is_none_or(|n| e.ifname == n))
            .collect();
        if eps.is_empty() {
            return Err(ModelError::Invalid {
                object: format!("sandbox {sandbox:?}"),
                why: format!(
                    "it is not connected to network {:?}{}",
                    net.name,
                    ifname.map(|n| format!(" through {n}")).unwrap_or_default()
                ),
                fix: "`netloom endpoint ls` lists the connections".into(),
            }
            .into());
        }
        for ep in &eps {
            self.remove_endpoint(&net, ep)?;
        }
        Ok(eps)
    }

    /// Takes one endpoint (as read from the store) down and forgets it,
    /// whether or not its sandbox still exists. Safe to repeat.
    pub fn disconnect_endpoint(&mut self, ep: &Endpoint) -> Result<(), EngineError> {
        let net = self.store.network(&ep.network)?;
        self.remove_endpoint(&net, ep)
    }

    /// Takes one endpoint down and forgets it. Safe to repeat.
    pub(crate) fn remove_endpoint(
        &mut self,
        net: &Network,
        ep: &Endpoint,
    ) -> Result<(), EngineError> {
        let mut driver = self.driver_of(net)?;
        self.store
            .set_endpoint_state(&ep.id, EndpointState::Removing)?;
        let ns = crate::sandbox::open_if_same(&ep.sandbox, ep.sandbox_inode);
        let kernel = &mut self.kernel;
        driver.revoke_external_connectivity(kernel, net, ep)?;
        driver.leave(kernel, net, ep, ns.as_ref())?;
        driver.delete_endpoint(kernel, net, ep)?;
        self.store.remove_endpoint(&ep.id)?;
        tracing::info!(network = %net.name, sandbox = %ep.sandbox, endpoint = %&ep.id[..12], "disconnected");
        Ok(())
    }
}

/// How recording an endpoint and preparing its join went.
enum Prepared {
    Done,
    /// The store refused it: nothing of it is recorded.
    NotRecorded(EngineError),
    /// Recorded, but its preparation failed.
    Recorded(EngineError),
}
