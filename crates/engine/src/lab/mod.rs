//! Labs (seed 001): host — gateway namespace — lab bridge namespace ×n —
//! node sandboxes ×n×m. Each lab is its own address space.
//!
//! Names in the kernel:
//!
//! | object | name |
//! |---|---|
//! | host ↔ gateway veth, host end | `nlgw` (the only lab object in the host) |
//! | gateway namespace | `/run/netns/nlgw`; its end of the veth `uplink` |
//! | a lab's bridge namespace | `/run/netns/nlab-LAB`; bridge `br0`, uplink `up0` |
//! | the lab's link in the gateway | `l<slot>` |
//! | a node's namespace | `/run/netns/nlab-LAB:NODE`; its interface `eth0` |
//! | a node's bridge port | `n<index>` (index in the lab file) |
//! | nftables | `netloom-lab` (host: `ip`/`ip6`; gateway: `inet`; bridge namespace: `inet` and `bridge`), `netloom-partition` (`bridge`) |

mod build;
mod exec;
pub mod gateway;
mod health;
mod lifecycle;
pub mod partition;
pub mod plan;
pub mod spec;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use exec::LabTarget;
pub use lifecycle::Lab;
pub use netloom_store::{LabState, ProcessId};
pub use plan::{LabPlan, PlanSettings};
pub use spec::LabSpec;

use crate::EngineError;

/// One node of a lab as the partition layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    pub name: String,
    /// The node's bridge port: interface name inside the lab's bridge namespace.
    pub port: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
}

/// What the partition layer needs to know of a lab.
#[derive(Debug, Clone)]
pub struct LabView {
    pub name: String,
    /// Path of the lab's bridge network namespace (a file under /run/netns).
    pub bridge_netns: PathBuf,
    pub nodes: Vec<LabNode>,
}

impl LabView {
    /// The network namespace file of every node, in `nodes` order.
    pub fn node_netns(&self) -> Vec<PathBuf> {
        self.nodes
            .iter()
            .map(|n| netloom_kernel::named_path(&node_netns_name(&self.name, &n.name)))
            .collect()
    }
}

/// A node as recorded: where it sits and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// Position in the lab file; names the bridge port (`n<index>`).
    pub index: usize,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

/// The bridge inside every lab's bridge namespace.
pub const BRIDGE: &str = "br0";
/// The bridge namespace's link to the gateway.
pub const BRIDGE_UPLINK: &str = "up0";
/// A node's interface.
pub const NODE_IF: &str = "eth0";
/// Namespaces of labs start with this.
pub const NETNS_PREFIX: &str = "nlab-";

/// The bridge namespace's name of a lab.
pub fn bridge_netns_name(lab: &str) -> String {
    format!("{NETNS_PREFIX}{lab}")
}

/// A node's namespace name (`:` cannot occur in lab or node names).
pub fn node_netns_name(lab: &str, node: &str) -> String {
    format!("{NETNS_PREFIX}{lab}:{node}")
}

/// The lab a namespace name belongs to, if it is a lab's.
pub fn lab_of_netns(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(NETNS_PREFIX)?;
    Some(rest.split(':').next().unwrap_or(rest))
}

/// The bridge port of the node at `index`.
pub fn node_port(index: usize) -> String {
    format!("n{index}")
}

/// The IPAM network holding a lab's node addresses (its own address space).
pub fn ipam_network(lab: &str) -> String {
    format!("lab.{lab}")
}

/// Files of a lab (its hosts file) under the state directory.
pub fn lab_dir(state_dir: &Path, lab: &str) -> PathBuf {
    state_dir.join("labs").join(lab)
}

/// Retires `link` in `nl`'s namespace if it is there: a link left by an
/// earlier lab or gateway, waiting for the kernel to reap it with the
/// released namespace of its other end. Its name is free afterwards.
pub(crate) fn retire_if_present(
    nl: &mut netloom_kernel::Netlink,
    link: &str,
    what: &str,
) -> Result<(), EngineError> {
    match nl.retire_link(link) {
        Ok(old) => {
            tracing::debug!(link, retired = old, "retired a lingering link");
            Ok(())
        }
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(EngineError::kernel(
            &format!("{what}: retire a lingering {link}"),
            e,
        )),
    }
}

pub(crate) fn kerr(action: String) -> impl FnOnce(netloom_kernel::Error) -> EngineError {
    move |e| EngineError::kernel(&action, e)
}

pub(crate) fn fw_err(
    action: &str,
) -> impl FnOnce(netloom_kernel::nft::NftError) -> EngineError + '_ {
    move |e| {
        netloom_model::ModelError::Invalid {
            object: action.to_string(),
            why: e.to_string(),
            fix: "check that the kernel has nf_tables with NAT (modules nf_tables, nft_nat, nft_fib, \
                  nft_masq) and that netloom runs as root"
                .into(),
        }
        .into()
    }
}

/// Brings loopback up in the calling thread's network namespace (for a
/// fresh namespace made with `unshare`, as `netloom demo` uses).
pub fn loopback_up() -> Result<(), EngineError> {
    netloom_kernel::Netlink::open_current()
        .and_then(|mut nl| nl.set_up("lo", true))
        .map_err(|e| EngineError::kernel("bring lo up", e))
}

/// The process that runs this code, as the store records owners.
pub fn this_process() -> Option<ProcessId> {
    process_id(std::process::id())
}

/// A process by pid, with its start time; `None` if it is gone.
pub fn process_id(pid: u32) -> Option<ProcessId> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some(ProcessId { pid, start })
}

/// Whether the process still runs (same pid and start time).
pub fn process_alive(p: ProcessId) -> bool {
    process_id(p.pid) == Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unambiguous() {
        assert_eq!(lab_of_netns(&node_netns_name("a-b", "c")), Some("a-b"));
        assert_eq!(lab_of_netns(&bridge_netns_name("a")), Some("a"));
        assert_eq!(lab_of_netns("nlgw"), None);
    }

    #[test]
    fn this_process_is_alive() {
        let me = this_process().unwrap();
        assert!(process_alive(me));
        assert!(!process_alive(ProcessId {
            pid: me.pid,
            start: me.start + 1
        }));
    }
}
