//! netloom's persistent state behind the [`Store`] trait.
//!
//! [`SqliteStore`] is the embedded default: one SQLite file in the state
//! directory, WAL mode, every mutation in one `BEGIN IMMEDIATE` transaction,
//! and UNIQUE constraints that make a double allocation impossible even if
//! the code above them is wrong. Safe across concurrent processes.

mod endpoints;
mod error;
pub mod labs;
mod schema;
mod sqlite;

pub use error::StoreError;
pub use labs::{LabPort, LabRow, LabState, LabStore, NewLab, ProcessId, StoredPlan};
pub use sqlite::{random_id, SqliteStore};

use netloom_model::{Allocation, Endpoint, EndpointState, Lease, Network, NetworkRequest, State};
use std::net::IpAddr;

/// Persistent state. Every mutation is atomic: it happens whole or not at all.
pub trait Store {
    /// Validates and records a network, allocating its gateways and
    /// reserved addresses. Refuses a subnet overlapping another network's
    /// in the same address space.
    fn create_network(&mut self, request: &NetworkRequest) -> Result<Network, StoreError>;
    /// A network by name or id.
    fn network(&mut self, name_or_id: &str) -> Result<Network, StoreError>;
    fn networks(&mut self) -> Result<Vec<Network>, StoreError>;
    /// Housekeeping for a holder that keeps the store open across many
    /// commands, run between them (off any caller's clock). Never fails:
    /// what it cannot do now it does on a later call.
    fn tidy(&mut self) {}
    /// Removes a network. While owners hold addresses on it, refuses
    /// (naming them) unless `force`, which releases them too.
    fn remove_network(&mut self, name_or_id: &str, force: bool) -> Result<Network, StoreError>;
    /// Gives `owner` one address per family of the network: the requested
    /// one where given (at most one per family), else the next free one by
    /// the network's policy. In pooled mode each address comes with a
    /// private gateway taken from the pool right after it.
    fn allocate(
        &mut self,
        network: &str,
        owner: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<Lease>, StoreError>;
    /// [`Store::allocate`] for each `(owner, requested)` in turn, as one
    /// mutation: the same leases and the same first error as those calls
    /// in that order, but on an error nothing is allocated.
    ///
    /// This default makes the calls and releases what they gave when one
    /// fails; a store that can should do them in one transaction.
    fn allocate_many(
        &mut self,
        network: &str,
        requests: &[(&str, &[IpAddr])],
    ) -> Result<Vec<Vec<Lease>>, StoreError> {
        let mut out = Vec::with_capacity(requests.len());
        for &(owner, requested) in requests {
            match self.allocate(network, owner, requested) {
                Ok(leases) => out.push(leases),
                Err(e) => {
                    for &(owner, _) in &requests[..out.len()] {
                        if let Err(undo) = self.release(network, owner) {
                            tracing::warn!("could not release {owner:?} on {network:?}: {undo}");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }
    /// [`Store::create_network`] and then [`Store::allocate_many`] on the
    /// new network, as one mutation: on an error neither happened.
    ///
    /// This default makes the two calls and removes the network again when
    /// the allocations fail; a store that can should do both in one
    /// transaction.
    fn create_network_and_allocate(
        &mut self,
        request: &NetworkRequest,
        requests: &[(&str, &[IpAddr])],
    ) -> Result<(Network, Vec<Vec<Lease>>), StoreError> {
        let net = self.create_network(request)?;
        match self.allocate_many(&net.name, requests) {
            Ok(leases) => Ok((net, leases)),
            Err(e) => {
                if let Err(undo) = self.remove_network(&net.id, true) {
                    tracing::warn!("could not forget network {:?}: {undo}", net.name);
                }
                Err(e)
            }
        }
    }
    /// Releases everything `owner` holds on the network; returns what was
    /// released (nothing, without error, when the owner held nothing).
    fn release(&mut self, network: &str, owner: &str) -> Result<Vec<Allocation>, StoreError>;
    /// What `owner` holds on the network.
    fn leases(&mut self, network: &str, owner: &str) -> Result<Vec<Lease>, StoreError>;
    /// Every allocation on a network, in address order.
    fn allocations(&mut self, network: &str) -> Result<Vec<Allocation>, StoreError>;
    /// The whole state, for invariant checks.
    fn snapshot(&mut self) -> Result<State, StoreError>;

    /// Records a new endpoint (state `creating`) and allocates its addresses
    /// (owner: the endpoint id), in one transaction. Refuses a second
    /// endpoint with the same sandbox, network and interface name.
    fn add_endpoint(
        &mut self,
        endpoint: &Endpoint,
        requested: &[IpAddr],
    ) -> Result<Vec<Lease>, StoreError>;
    fn set_endpoint_state(&mut self, id: &str, state: EndpointState) -> Result<(), StoreError>;
    /// Deletes an endpoint record and releases its addresses (no-op when gone).
    fn remove_endpoint(&mut self, id: &str) -> Result<(), StoreError>;
    /// One endpoint by id or unique id prefix, with its leases.
    fn endpoint(&mut self, id: &str) -> Result<Endpoint, StoreError>;
    /// All endpoints, or those of one network, with their leases.
    fn endpoints(&mut self, network: Option<&str>) -> Result<Vec<Endpoint>, StoreError>;
    /// Records a named sandbox netloom created.
    fn add_sandbox(&mut self, name: &str, inode: u64) -> Result<(), StoreError>;
    /// Forgets a named sandbox; whether it was recorded.
    fn remove_sandbox(&mut self, name: &str) -> Result<bool, StoreError>;
    /// Named sandboxes netloom created, with their namespace inodes.
    fn sandboxes(&mut self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Interface names of the endpoints in a sandbox (by namespace inode).
    fn sandbox_ifnames(&mut self, inode: u64) -> Result<Vec<String>, StoreError>;
    /// Endpoints of one network in one sandbox (by namespace inode).
    fn sandbox_endpoints(&mut self, network: &str, inode: u64)
        -> Result<Vec<Endpoint>, StoreError>;
    /// Endpoints on `network` that a container runtime made for the
    /// container `container_id` (CNI).
    fn container_endpoints(
        &mut self,
        network: &str,
        container_id: &str,
    ) -> Result<Vec<Endpoint>, StoreError> {
        Ok(self
            .endpoints(Some(network))?
            .into_iter()
            .filter(|e| e.container_id.as_deref() == Some(container_id))
            .collect())
    }

    /// The lab records kept with this store, on its own connection, if it
    /// keeps them; `None` for a store that does not, whose user opens a
    /// [`LabStore`] of its own ([`LabStore::open`]).
    fn lab_store(&mut self) -> Result<Option<LabStore>, StoreError> {
        Ok(None)
    }
}
