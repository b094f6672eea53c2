//! netloom's engine: the one place where the store, the kernel and the
//! drivers meet. Every front door (CLI, CNI plugin, Docker plugin, library
//! users) goes through [`Engine`].

mod connect;
pub mod driver;
pub mod drivers;
mod error;
pub mod firewall;
pub mod gc;
pub mod kernel;
pub mod lab;
pub mod overlap;
pub mod sandbox;
pub mod shaping;

pub use connect::ConnectOptions;
pub use error::EngineError;
pub use netloom_model as model;
pub use netloom_store as store;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netloom_model::{
    invariants, Allocation, Endpoint, Lease, ModelError, Network, NetworkRequest, Violation,
};
use netloom_store::{SqliteStore, Store};

/// Where state lives unless `--state-dir` / `NETLOOM_STATE_DIR` say otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netloom";

/// The driver of networks created without `--driver`.
pub const DEFAULT_DRIVER: &str = "bridge";

pub struct Engine {
    store: Box<dyn Store>,
    state_dir: PathBuf,
    kernel: kernel::Kernel,
}

impl Engine {
    /// Opens the state in `state_dir` (created when missing).
    pub fn open(state_dir: &Path) -> Result<Engine, EngineError> {
        let store = SqliteStore::open(state_dir)?;
        Ok(Engine {
            store: Box::new(store),
            state_dir: state_dir.to_path_buf(),
            kernel: kernel::Kernel::default(),
        })
    }

    /// An engine over any store (tests use this with their own stores).
    pub fn with_store(store: Box<dyn Store>, state_dir: &Path) -> Engine {
        Engine {
            store,
            state_dir: state_dir.to_path_buf(),
            kernel: kernel::Kernel::default(),
        }
    }

    /// Gives the engine a helper thread, for an engine that serves many
    /// commands: parts of a command that do not depend on each other then
    /// run at once (see [`overlap`]). A command process has no use for it.
    pub fn start_helper(&mut self) -> Result<(), EngineError> {
        if self.kernel.helper.is_none() {
            let helper = overlap::Helper::start().map_err(|e| {
                EngineError::from(ModelError::Invalid {
                    object: "netloom engine".into(),
                    why: format!("cannot start its helper thread ({e})"),
                    fix: "check the process's thread limit (ulimit -u)".into(),
                })
            })?;
            self.kernel.helper = Some(helper);
        }
        Ok(())
    }

    /// Tells the helper thread, if there is one, that a command is coming:
    /// see [`overlap::Helper::get_ready`].
    pub fn get_ready(&self) {
        if let Some(h) = &self.kernel.helper {
            h.get_ready();
        }
    }

    /// Housekeeping between commands for an engine kept open across many
    /// (the service's): see [`netloom_store::Store::tidy`].
    pub fn tidy(&mut self) {
        self.store.tidy();
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Records a network and makes its kernel objects; all or nothing.
    pub fn create_network(&mut self, request: &NetworkRequest) -> Result<Network, EngineError> {
        let name = if request.driver.is_empty() {
            DEFAULT_DRIVER
        } else {
            request.driver.as_str()
        };
        let mut driver = drivers::by_name(name).ok_or_else(|| ModelError::Invalid {
            object: format!("network {:?}", request.name),
            why: format!("unknown driver {name:?}"),
            fix: format!("use one of: {}", drivers::NAMES.join(", ")),
        })?;
        let mut request = request.clone();
        request.driver = name.to_string();
        if let Some(mode) = driver.mode() {
            request.mode = mode;
        }
        // Validate everything, including the driver's options, before
        // anything is recorded.
        driver.validate(&request.validate("0000000000000000")?)?;
        let net = self.store.create_network(&request)?;
        if let Err(e) = driver.create_network(&mut self.kernel, &net) {
            let _ = driver.delete_network(&mut self.kernel, &net);
            if let Err(undo) = self.store.remove_network(&net.id, true) {
                tracing::warn!("could not forget network {}: {undo}", net.name);
            }
            return Err(e);
        }
        tracing::info!(network = %net.name, id = %net.id, driver = %net.driver, "network created");
        Ok(net)
    }

    pub fn network(&mut self, name_or_id: &str) -> Result<Network, EngineError> {
        Ok(self.store.network(name_or_id)?)
    }

    pub fn networks(&mut self) -> Result<Vec<Network>, EngineError> {
        Ok(self.store.networks()?)
    }

    /// Removes a network and its kernel objects. While sandboxes are
    /// connected (or IPAM owners hold addresses), refuses naming them unless
    /// `force`, which disconnects and releases them first.
    pub fn remove_network(
        &mut self,
        name_or_id: &str,
        force: bool,
    ) -> Result<Network, EngineError> {
        let net = self.store.network(name_or_id)?;
        let endpoints = self.store.endpoints(Some(&net.id))?;
        if !endpoints.is_empty() && !force {
            let shown: Vec<String> = endpoints
                .iter()
                .take(10)
                .map(|e| format!("{} ({})", e.sandbox, e.ifname))
                .collect();
            return Err(ModelError::Invalid {
                object: format!("network {:?}", net.name),
                why: format!(
                    "{} sandbox connection(s) remain: {}{}",
                    endpoints.len(),
                    shown.join(", "),
                    if endpoints.len() > 10 { ", ..." } else { "" }
                ),
                fix: "disconnect them first, or remove it anyway with --force".into(),
            }
            .into());
        }
        for ep in &endpoints {
            self.remove_endpoint(&net, ep)?;
        }
        let mut driver = self.driver_of(&net)?;
        driver.delete_network(&mut self.kernel, &net)?;
        let net = self.store.remove_network(&net.id, force)?;
        tracing::info!(network = %net.name, force, "network removed");
        Ok(net)
    }

    /// Endpoints, all or of one network, with their addresses.
    pub fn endpoints(&mut self, network: Option<&str>) -> Result<Vec<Endpoint>, EngineError> {
        Ok(self.store.endpoints(network)?)
    }

    /// Endpoints on `network` that a container runtime made for the
    /// container `container_id`.
    pub fn container_endpoints(
        &mut self,
        network: &str,
        container_id: &str,
    ) -> Result<Vec<Endpoint>, EngineError> {
        Ok(self.store.container_endpoints(network, container_id)?)
    }

    /// One endpoint by id or unique id prefix.
    pub fn endpoint(&mut self, id: &str) -> Result<Endpoint, EngineError> {
        Ok(self.store.endpoint(id)?)
    }

    /// What the endpoint's driver reports about it.
    pub fn endpoint_oper_info(
        &mut self,
        ep: &Endpoint,
    ) -> Result<std::collections::BTreeMap<String, String>, EngineError> {
        let net = self.store.network(&ep.network)?;
        Ok(self.driver_of(&net)?.endpoint_oper_info(&net, ep))
    }

    /// The MAC address of a link in the namespace netloom runs in (the
    /// host end of an endpoint), read on the engine's own socket.
    pub fn host_link_mac(&mut self, name: &str) -> Option<String> {
        let mac = self.kernel.host().ok()?.link_mac(name).ok()??;
        Some(mac.to_string())
    }

    /// Makes a named sandbox (a network namespace under /run/netns, which
    /// `ip netns exec NAME` also sees) with its loopback up.
    pub fn create_sandbox(&mut self, name: &str) -> Result<u64, EngineError> {
        netloom_model::network::check_name("sandbox name", name)?;
        let path = netloom_kernel::named_path(name);
        if path.exists() {
            return Err(ModelError::Invalid {
                object: format!("sandbox {name:?}"),
                why: format!("{} already exists", path.display()),
                fix: "choose another name, or connect the existing namespace by name as it is"
                    .into(),
            }
            .into());
        }
        let ns = netloom_kernel::Netns::create_named(name)
            .map_err(|e| EngineError::kernel(&format!("sandbox {name:?}: create"), e))?;
        let made = (|| {
            let inode = ns
                .inode()
                .map_err(|e| EngineError::kernel(&format!("sandbox {name:?}"), e))?;
            let mut nl = self.kernel.inside(&ns)?;
            nl.set_up("lo", true)
                .map_err(|e| EngineError::kernel(&format!("sandbox {name:?}: bring lo up"), e))?;
            self.store.add_sandbox(name, inode)?;
            Ok(inode)
        })();
        if made.is_err() {
            let _ = netloom_kernel::Netns::remove_named(name);
        }
        made
    }

    /// Disconnects every endpoint of a named sandbox and removes it;
    /// returns how many endpoints it had.
    pub fn remove_sandbox(&mut self, name: &str) -> Result<usize, EngineError> {
        let ns = sandbox::SandboxRef::Named(name.to_string()).open()?;
        let inode = ns
            .inode()
            .map_err(|e| EngineError::kernel(&format!("sandbox {name:?}"), e))?;
        drop(ns);
        let eps: Vec<Endpoint> = self
            .store
            .endpoints(None)?
            .into_iter()
            .filter(|e| e.sandbox_inode == inode)
            .collect();
        for ep in &eps {
            let net = self.store.network(&ep.network)?;
            self.remove_endpoint(&net, ep)?;
        }
        netloom_kernel::Netns::remove_named(name)
            .map_err(|e| EngineError::kernel(&format!("sandbox {name:?}: remove"), e))?;
        self.store.remove_sandbox(name)?;
        Ok(eps.len())
    }

    /// Named sandboxes netloom made: name, namespace inode, whether it
    /// still exists.
    pub fn sandboxes(&mut self) -> Result<Vec<(String, u64, bool)>, EngineError> {
        Ok(self
            .store
            .sandboxes()?
            .into_iter()
            .map(|(n, i)| {
                let alive = netloom_kernel::Netns::open_named(&n)
                    .ok()
                    .and_then(|ns| ns.inode().ok())
                    == Some(i);
                (n, i, alive)
            })
            .collect())
    }

    /// Gives `owner` one address per family of the network (see [`Store::allocate`]).
    pub fn allocate(
        &mut self,
        network: &str,
        owner: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<Lease>, EngineError> {
        let leases = self.store.allocate(network, owner, requested)?;
        for l in &leases {
            tracing::debug!(network, owner, address = %l.address, "allocated");
        }
        Ok(leases)
    }

    /// Releases what `owner` holds on the network; a no-op when it holds nothing.
    pub fn release(&mut self, network: &str, owner: &str) -> Result<Vec<Allocation>, EngineError> {
        let released = self.store.release(network, owner)?;
        for a in &released {
            tracing::debug!(network, owner, address = %a.address, "released");
        }
        Ok(released)
    }

    pub fn leases(&mut self, network: &str, owner: &str) -> Result<Vec<Lease>, EngineError> {
        Ok(self.store.leases(network, owner)?)
    }

    pub fn allocations(&mut self, network: &str) -> Result<Vec<Allocation>, EngineError> {
        Ok(self.store.allocations(network)?)
    }

    /// Runs every invariant over the stored state; empty when all hold.
    pub fn check(&mut self) -> Result<Vec<Violation>, EngineError> {
        let state = self.store.snapshot()?;
        Ok(invariants::check(&state))
    }
}
