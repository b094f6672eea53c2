//! The lab file (TOML): what a lab is made of.
//!
//! ```toml
//! name = "shop"
//! stop_on_failure = true          # `lab run` stops when a node's command fails
//!
//! [[node]]
//! name = "db"
//! address = "172.18.0.10"         # optional: else the next free one
//! command = "redis-server"        # optional: program (or ["program", "arg"])
//! args = ["--port", "6379"]
//! env = { LOG = "debug" }
//! workdir = "/tmp"
//!
//! [[node]]
//! name = "web"
//! command = ["python3", "-m", "http.server", "80"]
//! after = ["db"]                  # started once db's command is running
//!
//! [[port]]                         # published: host port 8080 -> web:80
//! host = 8080
//! node = "web"
//! port = 80
//! proto = "tcp"                   # tcp (default) or udp
//!
//! [driver]                         # optional test driver, in the bridge namespace
//! command = ["sh", "-c", "curl -s http://web/"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use netloom_model::ModelError;
use serde::{Deserialize, Serialize};

use super::plan::LabPlan;

/// Longest lab name (netns names and the IPAM network name derive from it).
pub const MAX_LAB_NAME: usize = 48;
/// Longest node name.
pub const MAX_NODE_NAME: usize = 48;

/// A command line: a program alone (`"prog"`) or a program with arguments
/// (`["prog", "arg"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    Program(String),
    Argv(Vec<String>),
}

/// A command to run, with its environment and working directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub command: Option<CommandLine>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
}

impl CommandSpec {
    /// Program and arguments, if there is a command.
    pub fn argv(&self) -> Option<Vec<String>> {
        let mut argv = match self.command.as_ref()? {
            CommandLine::Program(p) => vec![p.clone()],
            CommandLine::Argv(v) => v.clone(),
        };
        argv.extend(self.args.iter().cloned());
        (!argv.is_empty()).then_some(argv)
    }
}

/// One node of the lab file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandLine>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// Nodes whose commands start before this one's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

impl NodeSpec {
    /// The node's command with its environment and working directory.
    pub fn command_spec(&self) -> CommandSpec {
        CommandSpec {
            command: self.command.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
        }
    }
}

/// A published port: host port → node port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub host: u16,
    pub node: String,
    pub port: u16,
    #[serde(default = "tcp")]
    pub proto: String,
}

fn tcp() -> String {
    "tcp".into()
}

/// A lab file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSpec {
    pub name: String,
    #[serde(default)]
    pub stop_on_failure: bool,
    #[serde(default, rename = "node", alias = "nodes")]
    pub nodes: Vec<NodeSpec>,
    #[serde(default, rename = "port", alias = "ports")]
    pub ports: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<CommandSpec>,
}

fn bad(origin: &str, why: String, fix: &str) -> ModelError {
    ModelError::Invalid {
        object: origin.to_string(),
        why,
        fix: fix.to_string(),
    }
}

fn name_rule(what: &str, name: &str, max: usize) -> Result<(), String> {
    netloom_model::network::check_name(what, name).map_err(|e| e.to_string())?;
    if name.len() > max {
        return Err(format!("{what} {name:?} is longer than {max} characters"));
    }
    Ok(())
}

impl LabSpec {
    /// Reads and checks a lab file (not yet against a plan).
    pub fn load(path: &Path) -> Result<LabSpec, ModelError> {
        let origin = format!("lab file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(
                &origin,
                format!("cannot read it ({e})"),
                "give the path of a lab file (TOML); examples/ has some",
            )
        })?;
        LabSpec::parse(&origin, &text)
    }

    /// Parses and checks lab file text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<LabSpec, ModelError> {
        let spec: LabSpec = toml::from_str(text).map_err(|e| {
            bad(
                origin,
                e.to_string().trim_end().replace('\n', "\n  "),
                "fix the field named above; see examples/*.toml",
            )
        })?;
        spec.check(origin)?;
        Ok(spec)
    }

    /// Structural checks: names, references, start order, ports.
    pub fn check(&self, origin: &str) -> Result<(), ModelError> {
        let fail = |why: String, fix: &str| Err(bad(origin, why, fix));
        if let Err(why) = name_rule("field `name` (lab name)", &self.name, MAX_LAB_NAME) {
            return fail(why, "name the lab with letters, digits, '_', '.' and '-'");
        }
        if self.nodes.is_empty() {
            return fail(
                "it has no [[node]]".into(),
                "add at least one [[node]] with a name",
            );
        }
        let mut names = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Err(why) = name_rule(&format!("node[{i}] field `name`"), &n.name, MAX_NODE_NAME)
            {
                return fail(why, "name nodes with letters, digits, '_', '.' and '-'");
            }
            if !names.insert(n.name.as_str()) {
                return fail(
                    format!("node[{i}]: node name {:?} is used twice", n.name),
                    "give every node its own name",
                );
            }
            if n.command.is_none()
                && (!n.args.is_empty() || !n.env.is_empty() || n.workdir.is_some())
            {
                return fail(
                    format!(
                        "node[{i}] {:?}: `args`, `env` or `workdir` without `command`",
                        n.name
                    ),
                    "add a `command` or remove them",
                );
            }
            if matches!(&n.command, Some(CommandLine::Argv(v)) if v.is_empty())
                || matches!(&n.command, Some(CommandLine::Program(p)) if p.is_empty())
            {
                return fail(
                    format!("node[{i}] {:?}: field `command` is empty", n.name),
                    "name a program",
                );
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for a in &n.after {
                if !names.contains(a.as_str()) {
                    return fail(
                        format!("node[{i}] {:?}: field `after` names {a:?}, which is not a node of this lab", n.name),
                        "name nodes of this file in `after`",
                    );
                }
                if a == &n.name {
                    return fail(
                        format!(
                            "node[{i}] {:?}: field `after` names the node itself",
                            n.name
                        ),
                        "remove it",
                    );
                }
            }
        }
        self.start_order().map_err(|cycle| {
            bad(
                origin,
                format!("the `after` fields form a cycle: {}", cycle.join(" -> ")),
                "break the cycle: a node cannot start after itself",
            )
        })?;
        let mut host_ports = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if !names.contains(p.node.as_str()) {
                return fail(
                    format!(
                        "port[{i}]: field `node` names {:?}, which is not a node of this lab",
                        p.node
                    ),
                    "name a node of this file",
                );
            }
            if p.proto != "tcp" && p.proto != "udp" {
                return fail(
                    format!("port[{i}]: field `proto` is {:?}", p.proto),
                    "use \"tcp\" or \"udp\"",
                );
            }
            if p.host == 0 || p.port == 0 {
                return fail(
                    format!("port[{i}]: port 0 cannot be published"),
                    "use ports 1-65535",
                );
            }
            if !host_ports.insert((p.proto.as_str(), p.host)) {
                return fail(
                    format!(
                        "port[{i}]: host port {}/{} is published twice",
                        p.host, p.proto
                    ),
                    "publish each host port once",
                );
            }
        }
        if let Some(d) = &self.driver {
            if d.argv().is_none() {
                return fail(
                    "[driver]: field `command` is missing or empty".into(),
                    "name the program to run",
                );
            }
        }
        Ok(())
    }

    /// Checks what depends on the plan: addresses in the node subnet,
    /// distinct, not the bridge's; room for every node.
    pub fn check_plan(&self, origin: &str, plan: &LabPlan) -> Result<(), ModelError> {
        let mut seen = BTreeMap::new();
        let room = plan.nodes.size().saturating_sub(3);
        if self.nodes.len() as u128 > room {
            return Err(bad(
                origin,
                format!(
                    "it has {} nodes; the node subnet {} holds {room}",
                    self.nodes.len(),
                    plan.nodes
                ),
                "use fewer nodes or a wider node subnet (--lab-nodes, up to a /16)",
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(a) = n.address else { continue };
            let ip = IpAddr::V4(a);
            let why = if !plan.nodes.contains(&ip) {
                Some(format!("is outside the node subnet {}", plan.nodes))
            } else if let Some(role) = plan.nodes.reserved_role(&ip) {
                Some(format!("is the subnet's {role} address"))
            } else if a == plan.bridge {
                Some("is the bridge's address".into())
            } else {
                seen.insert(a, n.name.as_str())
                    .map(|other| format!("is node {other:?}'s too"))
            };
            if let Some(why) = why {
                return Err(bad(
                    origin,
                    format!("node[{i}] {:?}: field `address` {a} {why}", n.name),
                    &format!(
                        "choose a free address in {} other than {}, or leave `address` out",
                        plan.nodes, plan.bridge
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Node indexes in start order: every node after those it names in
    /// `after`, otherwise in file order. `Err` holds a cycle.
    pub fn start_order(&self) -> Result<Vec<usize>, Vec<String>> {
        let index: BTreeMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let mut done = vec![false; self.nodes.len()];
        let mut order = Vec::with_capacity(self.nodes.len());
        while order.len() < self.nodes.len() {
            let next = (0..self.nodes.len()).find(|&i| {
                !done[i]
                    && self.nodes[i]
                        .after
                        .iter()
                        .all(|a| index.get(a.as_str()).is_none_or(|&j| done[j]))
            });
            match next {
                Some(i) => {
                    done[i] = true;
                    order.push(i);
                }
                None => {
                    let waiting: Vec<String> = (0..self.nodes.len())
                        .filter(|&i| !done[i])
                        .map(|i| self.nodes[i].name.clone())
                        .collect();
                    return Err(waiting);
                }
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LabSpec, String> {
        LabSpec::parse("lab file t.toml", text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_file_parses() {
        let s = parse(
            r#"
name = "shop"
stop_on_failure = true
[[node]]
name = "db"
address = "172.18.0.10"
command = "sleep"
args = ["5"]
env = { A = "b" }
workdir = "/tmp"
[[node]]
name = "web"
command = ["sh", "-c", "true"]
after = ["db"]
[[port]]
host = 8080
node = "web"
port = 80
[driver]
command = ["true"]
"#,
        )
        .unwrap();
        assert_eq!(s.nodes[0].command_spec().argv().unwrap(), ["sleep", "5"]);
        assert_eq!(s.ports[0].proto, "tcp");
        assert_eq!(s.start_order().unwrap(), [0, 1]);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("name = \"x\"\n[[node]]\nname = \"a\"\nadress = \"1.2.3.4\"\n").unwrap_err();
        assert!(e.contains("adress") && e.contains("line 4"), "{e}");
        let e = parse("name = \"x\"\n[[node]]\nname = \"a\"\naddress = \"nope\"\n").unwrap_err();
        assert!(e.contains("address"), "{e}");
        let e = parse("name = \"x\"\n[[node]]\nname = \"a\"\nafter = [\"b\"]\n").unwrap_err();
        assert!(e.contains("field `after` names \"b\""), "{e}");
        let e = parse("name = \"x y\"\n[[node]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("field `name`"), "{e}");
        let e = parse(
            "name = \"x\"\n[[node]]\nname = \"a\"\nafter=[\"b\"]\n[[node]]\nname = \"b\"\nafter=[\"a\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("cycle"), "{e}");
        let e = parse(
            "name = \"x\"\n[[node]]\nname = \"a\"\n[[port]]\nhost = 1\nnode = \"z\"\nport = 2\n",
        )
        .unwrap_err();
        assert!(e.contains("port[0]: field `node`"), "{e}");
    }

    #[test]
    fn addresses_are_checked_against_the_plan() {
        let plan = LabPlan::resolve(&Default::default()).unwrap();
        let s = parse("name = \"x\"\n[[node]]\nname = \"a\"\naddress = \"10.0.0.1\"\n").unwrap();
        let e = s
            .check_plan("lab file t.toml", &plan)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `address` 10.0.0.1 is outside the node subnet 172.18.0.0/24"),
            "{e}"
        );
        let s =
            parse("name = \"x\"\n[[node]]\nname = \"a\"\naddress = \"172.18.0.254\"\n").unwrap();
        assert!(s
            .check_plan("f", &plan)
            .unwrap_err()
            .to_string()
            .contains("bridge"));
    }
}
