//! netloom's address model: pure data and rules, no I/O.
//!
//! Networks hold subnets (IPv4 and/or IPv6), each with a gateway, an
//! optional allocation range and reserved addresses; allocations map owners
//! to addresses. [`invariants::check`] states, as code, the invariants of the
//! formal model in seeds/002 that every state must keep.

pub mod addr;
pub mod alloc;
pub mod endpoint;
pub mod error;
pub mod invariants;
pub mod network;

pub use addr::{Cidr, Family};
pub use alloc::{Allocation, Lease, Owner};
pub use endpoint::{Endpoint, EndpointState, PortMapping, Proto};
pub use error::ModelError;
pub use invariants::{State, Violation};
pub use network::{Mode, Network, NetworkRequest, Policy, Subnet};
