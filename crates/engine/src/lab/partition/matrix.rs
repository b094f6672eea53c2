//! [`Reachability`]: who may talk to whom, as a matrix.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Which node may reach which, and which nodes lose frames at random.
///
/// JSON shape: `{"nodes": ["a", "b"], "allowed": [[true, false], [false,
/// true]], "loss": {"a": 30}}`; `allowed[from][to]`, indexed like `nodes`;
/// the diagonal is always true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reachability {
    /// Node names, in the lab's order.
    pub nodes: Vec<String>,
    /// `allowed[from][to]`.
    pub allowed: Vec<Vec<bool>>,
    /// Loss percentage of every node that has some (1-100).
    pub loss: BTreeMap<String, u8>,
}

impl Reachability {
    /// A full mesh over `nodes`, without loss.
    pub fn full_mesh(nodes: Vec<String>) -> Self {
        let n = nodes.len();
        Reachability {
            nodes,
            allowed: vec![vec![true; n]; n],
            loss: BTreeMap::new(),
        }
    }

    /// Whether `from` may reach `to` (by name); `None` for an unknown name.
    pub fn reaches(&self, from: &str, to: &str) -> Option<bool> {
        let i = self.nodes.iter().position(|n| n == from)?;
        let j = self.nodes.iter().position(|n| n == to)?;
        Some(self.allowed[i][j])
    }

    /// The ordered pairs `(from, to)` on which `self` and `other` differ
    /// (both over the same nodes; pairs of unknown nodes are skipped).
    pub fn differences(&self, other: &Reachability) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, from) in self.nodes.iter().enumerate() {
            for (j, to) in self.nodes.iter().enumerate() {
                if other.reaches(from, to) != Some(self.allowed[i][j]) {
                    out.push((from.clone(), to.clone()));
                }
            }
        }
        out
    }
}

/// A readable matrix: rows are senders, columns receivers; `+` reaches,
/// `-` cut, `.` the node itself; then one line of loss settings.
///
/// ```text
/// from\to  a  b  c
/// a        .  +  -
/// b        +  .  -
/// c        -  -  .
/// loss: a 30%
/// ```
impl fmt::Display for Reachability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CORNER: &str = "from\\to";
        let first = self
            .nodes
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(CORNER.len());
        let width = |name: &String| name.chars().count().max(1);
        write!(f, "{CORNER:<first$}")?;
        for name in &self.nodes {
            write!(f, "  {name}")?;
        }
        writeln!(f)?;
        for (i, from) in self.nodes.iter().enumerate() {
            let mut line = format!("{from:<first$}");
            for (j, to) in self.nodes.iter().enumerate() {
                let mark = if i == j {
                    "."
                } else if self.allowed[i][j] {
                    "+"
                } else {
                    "-"
                };
                line.push_str(&format!("  {mark:<w$}", w = width(to)));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        if self.loss.is_empty() {
            write!(f, "loss: none")
        } else {
            let list: Vec<String> = self.loss.iter().map(|(n, p)| format!("{n} {p}%")).collect();
            write!(f, "loss: {}", list.join(", "))
        }
    }
}
