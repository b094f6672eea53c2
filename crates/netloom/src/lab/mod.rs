//! `netloom lab ...` and `netloom demo`.

mod demo;
mod serve;
mod supervise;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

use netloom_engine::lab::{Lab, LabSpec, LabTarget, PlanSettings};
use netloom_engine::model::ModelError;
use netloom_engine::{Engine, EngineError};

use crate::commands::print_json;

pub use demo::{demo, DemoArgs};

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Bring a lab up from a lab file (TOML) and leave it up.
    #[command(
        after_help = "The lab file names the lab and its nodes (see examples/*.toml):\n\n  \
name = \"shop\"\n  \
[[node]]\n  \
name = \"db\"\n  \
[[node]]\n  \
name = \"web\"\n  \
address = \"172.18.0.10\"\n  \
[[port]]\n  \
host = 8080\n  \
node = \"web\"\n  \
port = 80\n\n\
Every node gets its own network namespace on the lab's bridge; every lab \
has its own address space, so two labs may use the same addresses. `lab up` \
starts no commands: use `netloom lab exec` (or `netloom lab run` to run the \
nodes' commands).\n\n\
Examples:\n  \
netloom lab up examples/lab-basic.toml\n  \
netloom lab up shop.toml --lab-base 10.77.0.0/16"
    )]
    Up {
        /// The lab file.
        file: PathBuf,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Take a lab down: its namespaces, links, rules, addresses and record.
    Down {
        /// The lab's name.
        name: String,
    },
    /// List labs (with --json: nodes, addresses, ports, supervisor).
    #[command(alias = "list")]
    Ls,
    /// Run a command in a node of a lab (or its bridge namespace).
    #[command(
        after_help = "The command runs in the node's network namespace, with the lab's hosts \
file over /etc/hosts (nodes reach each other by name) and NETLOOM_LAB, NETLOOM_NODE and \
NETLOOM_STATE_DIR set. With --bridge it runs in the lab's bridge namespace, which reaches \
every node: the place for test drivers, from which `netloom partition` works.\n\n\
Examples:\n  \
netloom lab exec shop web -- ping -c1 db\n  \
netloom lab exec shop --bridge -- sh -c 'netloom partition $NETLOOM_LAB split web db'"
    )]
    Exec {
        /// The lab's name.
        lab: String,
        /// The node (leave out with --bridge).
        #[arg(required_unless_present = "bridge", conflicts_with = "bridge")]
        node: Option<String>,
        /// Run in the lab's bridge namespace instead of a node.
        #[arg(long)]
        bridge: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Bring a lab up, run its nodes' commands (and test driver) in the
    /// foreground with name-prefixed output, and take it down when done.
    #[command(
        after_help = "The lab goes down when the test driver ends (its exit status is \
netloom's), when every node's command has ended, on Ctrl-C or SIGTERM, or, with \
`stop_on_failure = true` in the file, when a node's command fails. Nodes start in file \
order, each after the nodes its `after` names. If netloom is killed, the node commands die \
with it and `netloom gc` takes the lab down.\n\n\
Examples:\n  \
netloom lab run examples/lab-basic.toml\n  \
netloom lab run cluster.toml --lab-base 10.77.0.0/16"
    )]
    Run {
        /// The lab file.
        file: PathBuf,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Show the lab address plan in force (or what the settings make of it).
    Plan {
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// A tiny TCP server that answers every connection with the node's name.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        port: u16,
    },
}

/// The lab address plan settings. They are fixed while any lab exists:
/// leave them out to use the plan in force.
#[derive(Args, Debug, Default)]
pub struct PlanArgs {
    /// An IPv4 /16 that moves the whole plan (default 172.18.0.0/16: host
    /// 172.18.255.1/30, lab links from 172.18.192.0/19, nodes 172.18.0.0/24
    /// with the bridge at .254, IPv6 ULA derived from it).
    #[arg(long, env = "NETLOOM_LAB_BASE", value_name = "CIDR")]
    pub lab_base: Option<String>,
    /// The host ↔ gateway /30 (the only lab address in the host).
    #[arg(long, value_name = "CIDR")]
    pub lab_host_net: Option<String>,
    /// The range the per-lab /30 links come from.
    #[arg(long, value_name = "CIDR")]
    pub lab_links: Option<String>,
    /// The node subnet of every lab (up to a /16).
    #[arg(long, value_name = "CIDR")]
    pub lab_nodes: Option<String>,
    /// The bridge's address in the node subnet.
    #[arg(long, value_name = "IP")]
    pub lab_bridge: Option<String>,
    /// The IPv6 ULA /48 of the plan.
    #[arg(long, value_name = "CIDR")]
    pub lab_ula: Option<String>,
}

impl PlanArgs {
    fn settings(&self) -> PlanSettings {
        PlanSettings {
            base: self.lab_base.clone(),
            host: self.lab_host_net.clone(),
            labs: self.lab_links.clone(),
            nodes: self.lab_nodes.clone(),
            bridge: self.lab_bridge.clone(),
            ula: self.lab_ula.clone(),
        }
    }
}

pub fn run(engine: &mut Engine, json: bool, cmd: LabCmd) -> Result<ExitCode, EngineError> {
    match cmd {
        LabCmd::Up { file, plan } => {
            let spec = LabSpec::load(&file)?;
            let origin = format!("lab file {}", file.display());
            let lab = engine.lab_up(&spec, &origin, &plan.settings(), None)?;
            if json {
                print_json(&lab_json(&lab));
            } else {
                println!("lab {:?} up: {} node(s)", lab.name, lab.nodes.len());
                print_nodes(&lab);
            }
        }
        LabCmd::Down { name } => {
            let lab = engine.lab_down(&name)?;
            if json {
                print_json(&json!({ "removed": lab.name }));
            } else {
                println!("lab {:?} down", lab.name);
            }
        }
        LabCmd::Ls => {
            let labs = engine.labs()?;
            if json {
                print_json(&Value::Array(labs.iter().map(lab_json).collect()));
            } else if labs.is_empty() {
                println!("no labs");
            } else {
                println!(
                    "{:<20} {:<9} {:>5}  {:<18} {:<16} SUPERVISOR",
                    "NAME", "STATE", "NODES", "LINK", "PORTS"
                );
                for l in &labs {
                    let ports: Vec<String> = l
                        .spec
                        .ports
                        .iter()
                        .map(|p| format!("{}/{}", p.host, p.proto))
                        .collect();
                    println!(
                        "{:<20} {:<9} {:>5}  {:<18} {:<16} {}",
                        l.name,
                        l.state.as_str(),
                        l.nodes.len(),
                        format!("{}/30", l.uplink_v4()),
                        if ports.is_empty() {
                            "-".into()
                        } else {
                            ports.join(",")
                        },
                        l.owner
                            .map(|o| o.pid.to_string())
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        LabCmd::Exec {
            lab,
            node,
            bridge,
            command,
        } => {
            let target = match (node, bridge) {
                (_, true) => LabTarget::Bridge,
                (Some(n), false) => LabTarget::Node(n),
                (None, false) => unreachable!("clap requires a node or --bridge"),
            };
            let mut cmd = engine.lab_command(&lab, &target, &command, false)?;
            // Like `ip netns exec`: netloom becomes the command, so signals
            // reach it directly and its status is netloom's.
            use std::os::unix::process::CommandExt;
            let e = cmd.exec();
            return Err(ModelError::Invalid {
                object: format!("lab {lab:?}"),
                why: format!("cannot run {:?}: {e}", command[0]),
                fix: "check the command name and PATH".into(),
            }
            .into());
        }
        LabCmd::Run { file, plan } => return supervise::run(engine, &file, &plan.settings()),
        LabCmd::Plan { plan } => {
            let p = engine.lab_plan(&plan.settings())?;
            if json {
                print_json(&json!({
                    "host": format!("{}/30", p.host_v4()),
                    "gateway": format!("{}/30", p.gateway_v4()),
                    "lab_links": p.lab_links,
                    "slots": p.slots(),
                    "nodes": p.nodes,
                    "bridge": p.bridge,
                    "ula": p.ula,
                    "host6": format!("{}/64", p.host_v6()),
                }));
            } else {
                println!("{}", p.summary());
            }
        }
        LabCmd::Serve { port } => return serve::serve(port),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_nodes(lab: &Lab) {
    for n in &lab.nodes {
        println!("  {:<20} {:<15} {}", n.name, n.ipv4, n.ipv6);
    }
    for p in &lab.spec.ports {
        println!(
            "  published: host port {}/{} -> {}:{}",
            p.host, p.proto, p.node, p.port
        );
    }
}

/// The JSON shape of a lab (`lab ls --json`, `lab up --json`).
fn lab_json(l: &Lab) -> Value {
    json!({
        "name": l.name,
        "state": l.state.as_str(),
        "slot": l.slot,
        "link": format!("{}/30", l.uplink_v4()),
        "bridge": l.plan.bridge,
        "nodes": l.nodes.iter().map(|n| json!({
            "name": n.name,
            "ipv4": n.ipv4,
            "ipv6": n.ipv6,
            "port": netloom_engine::lab::node_port(n.index),
            "netns": netloom_engine::lab::node_netns_name(&l.name, &n.name),
        })).collect::<Vec<_>>(),
        "ports": l.spec.ports.iter().map(|p| json!({
            "host": p.host, "node": p.node, "port": p.port, "proto": p.proto,
        })).collect::<Vec<_>>(),
        "bridge_netns": netloom_engine::lab::bridge_netns_name(&l.name),
        "supervisor": l.owner.map(|o| o.pid),
    })
}
