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
    /// Check every invariant over the stored state and that the kernel
    /// agrees with it: exit 0 and "clean" when all hold, exit 1 and one line
    /// per violation otherwise.
    Check,
    /// Finish or undo interrupted commands and remove leftovers: endpoints
    /// whose sandbox is gone, kernel objects with netloom names and no record.
    Gc,
    /// Create, list and remove named sandboxes (network namespaces).
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Connect a sandbox to a network: an interface with addresses and
    /// routes, NAT and published ports as the network's driver provides.
    #[command(
        after_help = "SANDBOX is a sandbox name (a namespace under /run/netns), a path to a \
network namespace file, or pid:N.\n\n\
Examples:\n  \
netloom connect web sb1\n  \
netloom connect web sb1 --ip 10.88.0.10 --publish 8080:80 --publish 5353:53/udp\n  \
netloom connect web pid:4242 --ifname eth1 --mac 02:42:0a:58:00:0a"
    )]
    Connect(ConnectArgs),
    /// Disconnect a sandbox from a network, removing its interface and rules.
    Disconnect {
        /// Network name or id.
        network: String,
        /// Sandbox name, namespace path or pid:N.
        sandbox: String,
        /// Only this interface (when the sandbox has several on the network).
        #[arg(long)]
        ifname: Option<String>,
    },
    /// List and inspect endpoints (sandbox connections).
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Run a command in a new sandbox connected to networks; remove
    /// everything when it ends (also on Ctrl-C or SIGTERM, which reach the
    /// command first). Exits with the command's status.
    #[command(after_help = "Examples:\n  \
netloom run --network web -- curl -s http://10.88.0.2/\n  \
netloom run --network web --publish 8080:80 --name api -- ./server")]
    Run(RunArgs),
    /// Run a command inside a sandbox's network namespace; exits with its status.
    Exec {
        /// Sandbox name, namespace path or pid:N.
        sandbox: String,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Labs: many small networks of nodes on one machine, each its own
    /// address space, with supervised commands.
    #[command(subcommand)]
    Lab(crate::lab::LabCmd),
    /// Cut, heal and degrade links between the nodes of a lab.
    Partition(crate::partition::PartitionArgs),
    /// A five-node lab in a throwaway namespace: reachability, a split, a heal.
    Demo(crate::lab::DemoArgs),
    /// Stay resident and run connect, disconnect and CNI ADD/DEL/CHECK for
    /// the commands of this state directory, which then skip what every
    /// process pays again (loading, opening the state, opening sockets).
    #[command(
        long_about = "Stay resident and run `connect`, `disconnect` and CNI ADD, DEL and CHECK \
for the netloom commands of this state directory.\n\n\
While it runs, those commands send their arguments (as a CNI plugin: their environment and \
stdin) to the socket netloom.sock in the state directory and print the reply: the same output, \
errors and exit codes as when they do the work themselves, in a fraction of the time. Every \
request is its own transaction on the same state, so commands that do the work themselves can \
run beside it, and `netloom gc` finishes what a killed service left half done.\n\n\
A command does the work itself when no service listens, when the service runs another netloom \
binary (another build ID), or when it runs in another network or mount namespace. \
NETLOOM_SERVICE=off makes \
commands always do the work themselves; NETLOOM_SERVICE=require makes them fail rather than do \
so. With -v or NETLOOM_LOG set, commands do the work themselves (their logs stay theirs).\n\n\
It runs in the foreground until SIGINT, SIGTERM or SIGHUP; then it removes its socket and \
finishes the requests under way.",
        after_help = "Examples:\n  \
netloom serve &\n  \
netloom connect web sb1              # served\n  \
NETLOOM_SERVICE=require netloom disconnect web sb1\n  \
systemd: ExecStart=/usr/local/bin/netloom serve"
    )]
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Requests served at once. Each worker keeps its own database
    /// connection and sockets; one is fastest for requests that come one
    /// after another (a connection that sees another's write must reread
    /// the pages it cached), more serve bursts of parallel calls sooner.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Connect to this network (repeatable; the first one is the way out).
    #[arg(long)]
    pub network: Vec<String>,
    /// Publish a port on the first network: [HOSTIP:]HOSTPORT[-END]:PORT[-END][/PROTO].
    #[arg(long, short = 'p', value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Sandbox name (default: nlrun-PID-N); visible to `ip netns` while it runs.
    #[arg(long)]
    pub name: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConnectArgs {
    /// Network name or id.
    pub network: String,
    /// Sandbox name, namespace path or pid:N.
    pub sandbox: String,
    /// IPv4 address to use instead of the next free one.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// IPv6 address to use instead of the next free one.
    #[arg(long, value_name = "IP")]
    pub ip6: Option<String>,
    /// MAC address of the sandbox's interface (default: derived from the endpoint id).
    #[arg(long)]
    pub mac: Option<String>,
    /// Interface name inside the sandbox (default: the first free ethN).
    #[arg(long)]
    pub ifname: Option<String>,
    /// Another name the sandbox answers to on this network (repeatable).
    #[arg(long)]
    pub alias: Vec<String>,
    /// Publish a port: [HOSTIP:]HOSTPORT[-END]:PORT[-END][/tcp|udp|sctp] (repeatable).
    #[arg(long, short = 'p', value_name = "SPEC")]
    pub publish: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum SandboxCmd {
    /// Create a named sandbox (visible to `ip netns` too), loopback up.
    Create { name: String },
    /// Disconnect a sandbox from every network and remove it.
    #[command(alias = "remove")]
    Rm { name: String },
    /// List the sandboxes netloom created.
    #[command(alias = "list")]
    Ls,
}

#[derive(Subcommand, Debug)]
pub enum EndpointCmd {
    /// List endpoints: network, sandbox, interface, addresses, state.
    #[command(alias = "list")]
    Ls {
        /// Only this network's.
        #[arg(long)]
        network: Option<String>,
    },
    /// Show one endpoint (id or unique id prefix).
    Inspect { id: String },
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
    /// Driver that realises the network: bridge (a Linux bridge, NAT,
    /// published ports, isolation); ptp (routed: each sandbox gets ip/32
    /// and a gateway of its own); macvlan (-o parent=IF [-o
    /// mode=bridge|private|vepa|passthru]); ipvlan (-o parent=IF [-o
    /// mode=l2|l3|l3s]); host (addresses only, for sandboxes in the host
    /// namespace); null (addresses only, nothing in the kernel).
    #[arg(long, default_value = netloom_engine::DEFAULT_DRIVER)]
    pub driver: String,
    /// No way in or out: no default route, no NAT, nothing forwarded
    /// between the network and elsewhere.
    #[arg(long)]
    pub internal: bool,
    /// MTU of the network's interfaces.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Driver option KEY=VALUE (repeatable); bridge: isolate=false lets
    /// the network talk to other networks that also say so.
    #[arg(long = "opt", short = 'o', value_name = "KEY=VALUE")]
    pub opt: Vec<String>,
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
