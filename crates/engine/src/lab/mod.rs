//! Labs (seed 001): host — gateway namespace — lab bridge namespace ×n —
//! node sandboxes ×n×m. Each lab is its own address space.

pub mod partition;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

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
