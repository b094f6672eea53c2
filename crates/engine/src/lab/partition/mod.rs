//! Partitions: which nodes of a lab may talk to which, enforced in the
//! lab's bridge namespace (seed 001's `vagga_partition`).
//!
//! A lab's nodes hang off one bridge `br0`, each on its own port. Every
//! frame from one node to another is *bridged*, so it passes the bridge
//! family's `forward` hook exactly once per egress port, unicast, broadcast
//! (ARP) and multicast (IPv6 neighbour discovery) alike. Cutting there
//! cuts everything between two nodes at layer 2: TCP never passes, it
//! times out. Frames to and from the bridge itself (the gateway address,
//! ports published from outside) take the `input` and `output` hooks and
//! are never touched.
//!
//! The rules are one small table, `bridge netloom-partition`, created once
//! per lab (see [`rules`]); a partition itself is only set elements:
//!
//! * `isolated`: ports cut off from every other port;
//! * `cut`: port pairs (both orders) that may not talk;
//! * `loss`: `port . r` for every `r` below the port's loss percentage,
//!   matched against `numgen random mod 100` once for the ingress and once
//!   for the egress port, so a node's frames are dropped at random in both
//!   directions.
//!
//! Each change is one nf_tables transaction ([`NftSocket::commit`]): the
//! old cuts go and the new ones come at the same instant, or nothing
//! changes. The table is the truth: [`current`] reads it back; no table
//! means a full mesh.
//!
//! Semantics of the kinds:
//!
//! * `isolate`, `split` and `disjoint` replace the current cuts; loss
//!   settings stay.
//! * `heal` clears cuts and loss.
//! * `loss NODE PERCENT` sets one node's loss (0 removes it); cuts stay.
//!
//! [`NftSocket::commit`]: netloom_kernel::nft::NftSocket::commit

mod matrix;
mod probe;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};

use netloom_model::ModelError;

use super::LabView;
use crate::EngineError;

pub use matrix::Reachability;
pub use probe::probe;
pub use rules::TABLE;

/// The grammar of partitions, for errors and help texts.
pub const GRAMMAR: &str = "  isolate NODE...          cut each NODE off from every other node
  split GROUP GROUP...     nodes talk only to nodes that share a group with them
                           (GROUP = A,B,C; a node may be in several groups;
                           nodes in no group are isolated)
  disjoint GROUP GROUP...  like split, but every node of the lab exactly once
  heal                     full mesh again: no cuts, no loss
  loss NODE PERCENT        drop PERCENT% (0-100) of the frames to and from NODE
                           at random; 0 removes it
  show                     print the current reachability matrix";

/// A partition to apply to a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition {
    /// Full mesh: no cuts, no loss.
    Heal,
    /// Each listed node is cut off from every other node.
    Isolate(Vec<String>),
    /// Nodes talk only to nodes sharing a group with them; a node may be in
    /// several groups; unlisted nodes are isolated.
    Split(Vec<Vec<String>>),
    /// Like [`Partition::Split`], but every node of the lab is in exactly
    /// one group.
    Disjoint(Vec<Vec<String>>),
    /// Drops `percent`% of the frames to and from `node` at random (both
    /// directions); 0 removes the node's loss.
    Loss { node: String, percent: u8 },
}

impl Partition {
    /// Parses `KIND ARGS...` as the command line gives them, e.g.
    /// `("split", ["a,b", "c"])`.
    pub fn parse(kind: &str, args: &[String]) -> Result<Partition, EngineError> {
        let wrong = |why: String| -> EngineError { invalid(format!("partition {kind}"), why) };
        match kind {
            "heal" => {
                if let Some(extra) = args.first() {
                    return Err(wrong(format!("takes no arguments, got {extra:?}")));
                }
                Ok(Partition::Heal)
            }
            "isolate" => {
                if args.is_empty() {
                    return Err(wrong("needs at least one NODE".into()));
                }
                let mut seen = BTreeSet::new();
                for name in args {
                    check_name(kind, name)?;
                    if !seen.insert(name.as_str()) {
                        return Err(wrong(format!("node {name:?} is listed twice")));
                    }
                }
                Ok(Partition::Isolate(args.to_vec()))
            }
            "split" | "disjoint" => {
                if args.is_empty() {
                    return Err(wrong("needs at least one GROUP (A,B,C)".into()));
                }
                let mut groups = Vec::new();
                let mut home: BTreeMap<&str, usize> = BTreeMap::new();
                for (g, arg) in args.iter().enumerate() {
                    let mut group: Vec<String> = Vec::new();
                    for name in arg.split(',') {
                        check_name(kind, name).map_err(|_| {
                            wrong(format!(
                                "group {arg:?} has an empty or malformed node name; \
                                 write groups as A,B,C without spaces"
                            ))
                        })?;
                        if group.iter().any(|n| n == name) {
                            return Err(wrong(format!("group {arg:?} lists node {name:?} twice")));
                        }
                        if kind == "disjoint" {
                            if let Some(first) = home.insert(name, g) {
                                return Err(wrong(format!(
                                    "node {name:?} is in group {:?} and in group {arg:?}; \
                                     disjoint groups take every node exactly once \
                                     (use split for overlapping groups)",
                                    args[first]
                                )));
                            }
                        }
                        group.push(name.to_string());
                    }
                    groups.push(group);
                }
                Ok(if kind == "split" {
                    Partition::Split(groups)
                } else {
                    Partition::Disjoint(groups)
                })
            }
            "loss" => {
                let [node, percent] = args else {
                    return Err(wrong(format!(
                        "needs NODE and PERCENT, got {} argument(s)",
                        args.len()
                    )));
                };
                check_name(kind, node)?;
                let digits = percent.strip_suffix('%').unwrap_or(percent);
                let percent = digits
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| {
                        wrong(format!(
                            "PERCENT {percent:?} is not a whole number from 0 to 100"
                        ))
                    })?;
                Ok(Partition::Loss {
                    node: node.clone(),
                    percent,
                })
            }
            "show" => Err(invalid(
                "partition show",
                "shows the current partition; it is not one to apply".into(),
            )),
            other => Err(invalid(
                "partition",
                format!("kind {other:?} is not one of isolate, split, disjoint, heal, loss, show"),
            )),
        }
    }

    /// Every node name the partition mentions.
    fn names(&self) -> Vec<&str> {
        match self {
            Partition::Heal => Vec::new(),
            Partition::Isolate(nodes) => nodes.iter().map(String::as_str).collect(),
            Partition::Split(groups) | Partition::Disjoint(groups) => {
                groups.iter().flatten().map(String::as_str).collect()
            }
            Partition::Loss { node, .. } => vec![node.as_str()],
        }
    }
}

/// What the cuts of a partition are, by node index: `allowed[from][to]`.
/// `None` for partitions that do not set cuts (loss).
fn cut_matrix(view: &LabView, p: &Partition) -> Result<Option<Vec<Vec<bool>>>, EngineError> {
    let n = view.nodes.len();
    let index = |name: &str| view.nodes.iter().position(|node| node.name == name);
    for name in p.names() {
        if index(name).is_none() {
            let known: Vec<&str> = view.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(invalid(
                format!("lab {:?}", view.name),
                format!(
                    "has no node {name:?}; its nodes are: {}",
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    let full = |v: bool| vec![vec![v; n]; n];
    let mut allowed = match p {
        Partition::Loss { .. } => return Ok(None),
        Partition::Heal => full(true),
        Partition::Isolate(nodes) => {
            let mut allowed = full(true);
            for name in nodes {
                let i = index(name).expect("checked above");
                allowed[i].fill(false);
                for row in allowed.iter_mut() {
                    row[i] = false;
                }
            }
            allowed
        }
        Partition::Split(groups) | Partition::Disjoint(groups) => {
            if let Partition::Disjoint(_) = p {
                let listed: BTreeSet<&str> = p.names().into_iter().collect();
                let missing: Vec<&str> = view
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .filter(|name| !listed.contains(name))
                    .collect();
                if !missing.is_empty() {
                    return Err(invalid(
                        "partition disjoint".to_string(),
                        format!(
                            "takes every node of lab {:?} exactly once, but {} {} in no group",
                            view.name,
                            missing.join(", "),
                            if missing.len() == 1 { "is" } else { "are" }
                        ),
                    ));
                }
            }
            let mut allowed = full(false);
            for group in groups {
                let members: Vec<usize> = group
                    .iter()
                    .map(|name| index(name).expect("checked above"))
                    .collect();
                for &i in &members {
                    for &j in &members {
                        allowed[i][j] = true;
                    }
                }
            }
            allowed
        }
    };
    for (i, row) in allowed.iter_mut().enumerate() {
        row[i] = true;
    }
    Ok(Some(allowed))
}

/// Applies `p` to the lab in one nf_tables transaction and returns the
/// reachability read back from the kernel. Idempotent: applying the same
/// partition again changes nothing. A partition naming a node the lab
/// lacks, or a `disjoint` that misses a node, is refused before the kernel
/// is touched.
pub fn apply(view: &LabView, p: &Partition) -> Result<Reachability, EngineError> {
    let cuts = cut_matrix(view, p)?;
    let mut table = rules::PartitionTable::open(view)?;
    match (p, cuts) {
        (Partition::Loss { node, percent }, _) => {
            let port = &view
                .nodes
                .iter()
                .find(|n| &n.name == node)
                .expect("checked by cut_matrix")
                .port;
            table.set_loss(port, *percent)?;
        }
        (Partition::Heal, _) => table.heal()?,
        (_, Some(allowed)) => table.set_cuts(&allowed)?,
        (_, None) => unreachable!("every cut kind has a matrix"),
    }
    let now = table.read()?;
    tracing::info!(lab = %view.name, partition = ?p, "partition applied");
    Ok(now)
}

/// The lab's current reachability, read from the kernel (the partition
/// table in the bridge namespace; without one, a full mesh).
///
/// `allowed[i][j]` is false when the pair is cut or either node has 100%
/// loss; `loss` lists every node with some loss.
pub fn current(view: &LabView) -> Result<Reachability, EngineError> {
    rules::PartitionTable::open(view)?.read()
}

fn check_name(kind: &str, name: &str) -> Result<(), EngineError> {
    if name.is_empty() || name.contains(',') || name.chars().any(char::is_whitespace) {
        return Err(invalid(
            format!("partition {kind}"),
            format!("{name:?} is not a node name"),
        ));
    }
    Ok(())
}

/// A refused request, with the grammar as the fix.
fn invalid(object: impl Into<String>, why: String) -> EngineError {
    ModelError::Invalid {
        object: object.into(),
        why,
        fix: format!("usage: netloom partition [LAB] KIND ARGS...\n{GRAMMAR}"),
    }
    .into()
}

#[cfg(test)]
mod tests;
