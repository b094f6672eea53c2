//! netloom's engine: the one place where the store, the kernel and the
//! drivers meet. Every front door (CLI, CNI plugin, Docker plugin, library
//! users) goes through [`Engine`].

mod error;

pub use error::EngineError;
pub use netloom_model as model;
pub use netloom_store as store;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netloom_model::{
    invariants, Allocation, Lease, ModelError, Network, NetworkRequest, Violation,
};
use netloom_store::{SqliteStore, Store};

/// Where state lives unless `--state-dir` / `NETLOOM_STATE_DIR` say otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netloom";

/// Drivers this build can create networks with.
pub const DRIVERS: &[&str] = &["null"];

pub struct Engine {
    store: Box<dyn Store>,
    state_dir: PathBuf,
}

impl Engine {
    /// Opens the state in `state_dir` (created when missing).
    pub fn open(state_dir: &Path) -> Result<Engine, EngineError> {
        let store = SqliteStore::open(state_dir)?;
        Ok(Engine {
            store: Box::new(store),
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// An engine over any store (tests use this with their own stores).
    pub fn with_store(store: Box<dyn Store>, state_dir: &Path) -> Engine {
        Engine {
            store,
            state_dir: state_dir.to_path_buf(),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn create_network(&mut self, request: &NetworkRequest) -> Result<Network, EngineError> {
        let driver = if request.driver.is_empty() {
            "null"
        } else {
            request.driver.as_str()
        };
        if !DRIVERS.contains(&driver) {
            return Err(ModelError::Invalid {
                object: format!("network {:?}", request.name),
                why: format!("unknown driver {driver:?}"),
                fix: format!("use one of: {}", DRIVERS.join(", ")),
            }
            .into());
        }
        let net = self.store.create_network(request)?;
        tracing::info!(network = %net.name, id = %net.id, driver = %net.driver, "network created");
        Ok(net)
    }

    pub fn network(&mut self, name_or_id: &str) -> Result<Network, EngineError> {
        Ok(self.store.network(name_or_id)?)
    }

    pub fn networks(&mut self) -> Result<Vec<Network>, EngineError> {
        Ok(self.store.networks()?)
    }

    pub fn remove_network(
        &mut self,
        name_or_id: &str,
        force: bool,
    ) -> Result<Network, EngineError> {
        let net = self.store.remove_network(name_or_id, force)?;
        tracing::info!(network = %net.name, force, "network removed");
        Ok(net)
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
