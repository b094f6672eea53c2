//! netloom's only door to the kernel: netlink (links, addresses, routes,
//! neighbours), network namespaces, sysctls and nftables.
//!
//! Nothing here exposes the netlink crates' types: callers see [`Netlink`],
//! [`Netns`] and the plain value types below.
//!
//! Code runs inside a namespace only on dedicated short-lived threads
//! ([`Netns::run`]). A [`Netlink`] socket in another namespace is made by
//! the calling thread going in for the few system calls that open it and
//! straight back ([`Netlink::open_in`]); it keeps its namespace for life,
//! so one socket per namespace is opened once and reused. No process is
//! ever spawned.
//!
//! A typical "connect a sandbox" sequence:
//!
//! ```no_run
//! use netloom_kernel::*;
//! # fn main() -> Result<()> {
//! let sandbox = Netns::open_named("sb1")?;
//! let mut host = Netlink::open_current()?;
//! let bridge = host.link_index("nl-br0")?;
//! host.create_veth(
//!     &LinkSpec::new("nl-ab12").master(bridge).up(),
//!     &LinkSpec::new("eth0").netns(&sandbox),
//! )?;
//! let mut inside = Netlink::open_in(&sandbox)?;
//! let eth0 = inside.link_index("eth0")?;
//! inside.set_up(eth0, true)?;
//! inside.add_address(eth0, "10.1.0.2/24".parse().unwrap(), AddressOptions::default())?;
//! inside.add_route(&Route::default_via("10.1.0.1".parse().unwrap()))?;
//! # Ok(()) }
//! ```

mod addr;
mod error;
mod feature;
pub mod lab_support;
mod link;
mod link_query;
mod neigh;
mod netns;
pub mod nft;
mod release;
mod route;
mod socket;
mod sysctl;
mod tc;
mod types;

pub use addr::{Address, AddressOptions};
pub use error::{Error, ErrorKind, Result};
pub use feature::supports_link_kind;
pub use link::{
    IpvlanMode, LinkSpec, MacvlanMode, VxlanSpec, DELETING_LINK_ALIAS, DELETING_LINK_GROUP,
    RETIRED_LINK_PREFIX,
};
pub use link_query::Link;
pub use neigh::Neighbour;
pub use netns::{named_path, Netns, NETNS_RUN_DIR};
pub use release::use_a_thread as background_on_a_thread;
pub use route::{Route, MAIN_TABLE};
pub use socket::Netlink;
pub use sysctl::disable_ipv6_here;
pub use tc::{Qdisc, Tbf};
pub use types::{Family, IpPrefix, LinkRef, MacAddr, ParseError, Scope, MAX_IFNAME_LEN};
