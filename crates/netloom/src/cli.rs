//! Command-line grammar.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "netloom",
    version,
    about = "A container networking engine for Linux",
    long_about = "netloom creates networks, hands out addresses, plugs network namespaces in, \
routes, NATs, publishes ports, isolates networks, and cuts and heals links.\n\n\
State lives in one SQLite file under the state directory; every change is one \
transaction, so concurrent netloom processes never hand out an address twice.",
    after_help = "Examples:\n  \
netloom network create web --subnet 10.88.0.0/24 --subnet fd00:88::/64\n  \
netloom ipam allocate web --owner c1\n  \
netloom ipam allocate web --owner c2 --ip 10.88.0.50\n  \
netloom --json ipam ls web\n  \
netloom check"
)]
pub struct Cli {
    /// Directory holding netloom's state.
    #[arg(long, global = true, env = "NETLOOM_STATE_DIR", default_value = netloom_engine::DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,

    /// Print machine-readable JSON (shapes in docs/json.md).
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); NETLOOM_LOG=LEVEL does the same.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Hand out and release addresses on a network.
    #[command(subcommand)]
    Ipam(IpamCmd),
    /// Check every invariant over the stored state: exit 0 and "clean" when
    /// all hold, exit 1 and one line per violation otherwise.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network.
    #[command(
        after_help = "Gateways, IP ranges and aux addresses belong to the subnet that contains them.\n\n\
Examples:\n  \
netloom network create web --subnet 10.88.0.0/24\n  \
netloom network create db --subnet 10.89.0.0/16 --ip-range 10.89.1.0/24 --gateway 10.89.0.254 \\\n      \
--aux-address router=10.89.0.2 --subnet fd00:89::/64 --ipam-policy lowest\n  \
netloom network create routed --driver null --mode pooled --subnet 10.90.0.0/24"
    )]
    Create(NetworkCreate),
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show one network and how full its pools are.
    Inspect {
        /// Network name or id.
        name: String,
    },
    /// Remove a network.
    #[command(alias = "remove")]
    Rm {
        /// Network name or id.
        name: String,
        /// Remove it even while owners hold addresses on it (releasing them).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct NetworkCreate {
    /// Network name: letters, digits, '_', '.', '-'.
    pub name: String,
    /// Driver that realises the network.
    #[arg(long, default_value = "null")]
    pub driver: String,
    /// A subnet, IPv4 or IPv6 (repeatable; one per family is usual).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Vec<String>,
    /// Gateway of the subnet that contains it (default: its first host address).
    #[arg(long, value_name = "IP")]
    pub gateway: Vec<String>,
    /// Hand out dynamic addresses only from this range inside a subnet.
    #[arg(long = "ip-range", value_name = "CIDR")]
    pub ip_range: Vec<String>,
    /// Keep an address out of allocation, under a name (repeatable).
    #[arg(long = "aux-address", value_name = "NAME=IP")]
    pub aux_address: Vec<String>,
    /// Address space: subnets of networks in one space must be disjoint; spaces are independent.
    #[arg(long = "address-space", value_name = "NAME")]
    pub address_space: Option<String>,
    /// How dynamic addresses are chosen.
    #[arg(long = "ipam-policy", value_enum, default_value_t = PolicyArg::Sequential)]
    pub ipam_policy: PolicyArg,
    /// shared: endpoints share the subnet and gateway; pooled: each endpoint
    /// gets ip/32 and a gateway of its own from the pool (routed).
    #[arg(long, value_enum, default_value_t = ModeArg::Shared)]
    pub mode: ModeArg,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum PolicyArg {
    /// Next free after the last one handed out, wrapping around.
    Sequential,
    /// Lowest free address.
    Lowest,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ModeArg {
    Shared,
    Pooled,
}

#[derive(Subcommand, Debug)]
pub enum IpamCmd {
    /// Give an owner one address per family of the network; prints what it gave.
    Allocate {
        /// Network name or id.
        network: String,
        /// Who holds the address (e.g. a container id).
        #[arg(long)]
        owner: String,
        /// Ask for this address (at most one per family) instead of the next free one.
        #[arg(long, value_name = "IP")]
        ip: Vec<String>,
    },
    /// Release what an owner holds on the network (a no-op if it holds nothing).
    Release {
        network: String,
        #[arg(long)]
        owner: String,
    },
    /// List every allocated address of a network with its owner.
    #[command(alias = "list")]
    Ls { network: String },
}
