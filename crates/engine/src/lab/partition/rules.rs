//! The partition table in a lab's bridge namespace: its skeleton (nft
//! text, applied once per lab) and its elements (netlink, one transaction
//! per change).

use std::collections::{BTreeMap, BTreeSet};

use netloom_kernel::nft::{
    apply_ruleset, Batch, Element, Family, NftError, NftSocket, RawElement, SetRef, TableRef,
    Value, IFNAME_LEN,
};

use super::matrix::Reachability;
use crate::firewall::FirewallError;
use crate::lab::LabView;
use crate::EngineError;

/// The table's name (family `bridge`).
pub const TABLE: &str = "netloom-partition";

/// Set of ports cut off from every other port.
const ISOLATED: &str = "isolated";
/// Set of `port . port` pairs that may not talk (both orders are stored).
const CUT: &str = "cut";
/// Set of `port . r`: frames of the port are dropped when a fresh random
/// number in 0..100 equals one of its `r`s, i.e. with probability
/// (number of its elements)%.
const LOSS: &str = "loss";

/// The skeleton. Every statement is idempotent (`add` of what exists is a
/// no-op; the chain is flushed and refilled), so applying it again, or
/// from two processes at once, leaves one copy of each rule and keeps the
/// set elements. Priority `filter` (-200) in the `forward` hook: every
/// bridged frame, once per egress port; frames to or from the bridge
/// device itself never pass here.
fn skeleton() -> String {
    format!(
        "add table bridge {TABLE}
add set bridge {TABLE} {ISOLATED} {{ type ifname; }}
add set bridge {TABLE} {CUT} {{ type ifname . ifname; }}
add set bridge {TABLE} {LOSS} {{ typeof iifname . numgen random mod 100; }}
add chain bridge {TABLE} forward {{ type filter hook forward priority filter; policy accept; }}
flush chain bridge {TABLE} forward
add rule bridge {TABLE} forward iifname @{ISOLATED} drop
add rule bridge {TABLE} forward oifname @{ISOLATED} drop
add rule bridge {TABLE} forward iifname . oifname @{CUT} drop
add rule bridge {TABLE} forward iifname . numgen random mod 100 @{LOSS} drop
add rule bridge {TABLE} forward oifname . numgen random mod 100 @{LOSS} drop
"
    )
}

/// The partition table of one lab, through one nf_tables socket opened in
/// the lab's bridge namespace.
pub(super) struct PartitionTable<'a> {
    view: &'a LabView,
    nft: NftSocket,
}

impl<'a> PartitionTable<'a> {
    pub(super) fn open(view: &'a LabView) -> Result<Self, EngineError> {
        let nft = NftSocket::open_in(&view.bridge_netns).map_err(|e| {
            kernel_error(
                view,
                "open an nf_tables socket in the bridge namespace",
                e,
                format!(
                    "check that the lab is up ({} exists) and that netloom runs as root",
                    view.bridge_netns.display()
                ),
            )
        })?;
        Ok(PartitionTable { view, nft })
    }

    fn set(name: &str) -> SetRef {
        SetRef::new(Family::Bridge, TABLE, name)
    }

    fn table() -> TableRef {
        TableRef::new(Family::Bridge, TABLE)
    }

    fn exists(&mut self) -> Result<bool, EngineError> {
        let view = self.view;
        self.nft
            .table_exists(&Self::table())
            .map_err(|e| kernel_error(view, "look for the partition table", e, String::new()))
    }

    /// Creates the skeleton unless the table is there; says whether it did.
    fn ensure(&mut self) -> Result<bool, EngineError> {
        if self.exists()? {
            return Ok(false);
        }
        apply_ruleset(Some(&self.view.bridge_netns), &skeleton()).map_err(|e| {
            kernel_error(
                self.view,
                "create the partition table",
                e,
                "the kernel needs nf_tables with bridge family support (nft_meta_bridge, \
                 nft_numgen); check `nft list tables` in the bridge namespace"
                    .into(),
            )
        })?;
        Ok(true)
    }

    /// Commits `batch` on a table made ready first; if the table was
    /// created for this batch and the batch fails, the table goes again,
    /// so a failed change leaves the kernel as it was.
    fn commit(
        &mut self,
        action: &str,
        build: impl Fn(&mut Self) -> Result<Batch, EngineError>,
    ) -> Result<(), EngineError> {
        let created = self.ensure()?;
        let result = build(self).and_then(|batch| {
            self.nft
                .commit(&batch)
                .map_err(|e| kernel_error(self.view, action, e, "nothing was changed".into()))
        });
        if result.is_err() && created {
            let _ = self.nft.delete_table(&Self::table());
        }
        result
    }

    /// Replaces every cut with those of `allowed` (loss stays): nodes
    /// with no allowed peer go to `isolated`, other forbidden pairs to
    /// `cut`.
    pub(super) fn set_cuts(&mut self, allowed: &[Vec<bool>]) -> Result<(), EngineError> {
        let n = allowed.len();
        let ports: Vec<&str> = self.view.nodes.iter().map(|n| n.port.as_str()).collect();
        let alone: Vec<bool> = (0..n)
            .map(|i| (0..n).all(|j| i == j || (!allowed[i][j] && !allowed[j][i])))
            .collect();
        let mut isolated = Vec::new();
        let mut cut = Vec::new();
        for i in 0..n {
            if alone[i] && n > 1 {
                isolated.push(Element::new(ifname(ports[i])));
                continue;
            }
            for j in 0..n {
                if i != j && !alone[j] && !allowed[i][j] {
                    cut.push(Element::concat([ifname(ports[i]), ifname(ports[j])]));
                }
            }
        }
        self.commit("replace the cuts", move |_| {
            let mut batch = Batch::new();
            batch.flush(&Self::set(ISOLATED)).flush(&Self::set(CUT));
            if !isolated.is_empty() {
                batch.add(&Self::set(ISOLATED), isolated.clone());
            }
            if !cut.is_empty() {
                batch.add(&Self::set(CUT), cut.clone());
            }
            Ok(batch)
        })
    }

    /// Clears cuts and loss. Without a table there is nothing to clear.
    pub(super) fn heal(&mut self) -> Result<(), EngineError> {
        if !self.exists()? {
            return Ok(());
        }
        self.commit("clear cuts and loss", |_| {
            let mut batch = Batch::new();
            for set in [ISOLATED, CUT, LOSS] {
                batch.flush(&Self::set(set));
            }
            Ok(batch)
        })
    }

    /// Sets the loss of one port: deletes its current elements and adds
    /// `port . 0` to `port . percent-1`, in one transaction.
    pub(super) fn set_loss(&mut self, port: &str, percent: u8) -> Result<(), EngineError> {
        if percent == 0 && !self.exists()? {
            return Ok(());
        }
        let action = format!("set the loss of port {port} to {percent}%");
        self.commit(&action, |me| {
            let old: Vec<Element> = me
                .list(LOSS)?
                .iter()
                .filter_map(decode_loss)
                .filter(|(p, _)| p == port)
                .map(|(_, r)| loss_element(port, r))
                .collect();
            let mut batch = Batch::new();
            if !old.is_empty() {
                batch.delete(&Self::set(LOSS), old);
            }
            if percent > 0 {
                batch.add(
                    &Self::set(LOSS),
                    (0..u32::from(percent)).map(|r| loss_element(port, r)),
                );
            }
            Ok(batch)
        })
    }

    fn list(&mut self, set: &str) -> Result<Vec<RawElement>, EngineError> {
        let view = self.view;
        self.nft
            .list_raw_elements(&Self::set(set))
            .map_err(|e| kernel_error(view, &format!("read set {set}"), e, String::new()))
    }

    /// The reachability the table enforces.
    pub(super) fn read(&mut self) -> Result<Reachability, EngineError> {
        let names: Vec<String> = self.view.nodes.iter().map(|n| n.name.clone()).collect();
        let n = names.len();
        let mut reach = Reachability {
            nodes: names,
            allowed: vec![vec![true; n]; n],
            loss: BTreeMap::new(),
        };
        if !self.exists()? {
            return Ok(reach);
        }
        let index: BTreeMap<&str, usize> = self
            .view
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.port.as_str(), i))
            .collect();
        let isolated: BTreeSet<usize> = self
            .list(ISOLATED)?
            .iter()
            .filter_map(|e| index.get(ifname_at(&e.key, 0)?.as_str()).copied())
            .collect();
        let cut: Vec<(usize, usize)> = self
            .list(CUT)?
            .iter()
            .filter_map(|e| {
                let a = index.get(ifname_at(&e.key, 0)?.as_str())?;
                let b = index.get(ifname_at(&e.key, IFNAME_LEN)?.as_str())?;
                Some((*a, *b))
            })
            .collect();
        let mut loss: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
        for (port, r) in self.list(LOSS)?.iter().filter_map(decode_loss) {
            if let (Some(i), true) = (index.get(port.as_str()), r < 100) {
                loss.entry(*i).or_default().insert(r);
            }
        }
        let lost = |i: usize| loss.get(&i).is_some_and(|rs| rs.len() >= 100);
        for i in 0..n {
            for j in 0..n {
                if i != j && (isolated.contains(&i) || isolated.contains(&j) || lost(i) || lost(j))
                {
                    reach.allowed[i][j] = false;
                }
            }
        }
        for (i, j) in cut {
            if i != j {
                reach.allowed[i][j] = false;
            }
        }
        for (i, rs) in loss {
            reach
                .loss
                .insert(reach.nodes[i].clone(), rs.len().min(100) as u8);
        }
        Ok(reach)
    }
}

fn ifname(port: &str) -> Value {
    Value::Ifname(port.to_string())
}

fn loss_element(port: &str, r: u32) -> Element {
    Element::concat([ifname(port), Value::U32(r)])
}

/// The interface name stored at `offset` of a key (NUL-padded).
fn ifname_at(key: &[u8], offset: usize) -> Option<String> {
    let bytes = key.get(offset..offset + IFNAME_LEN)?;
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(IFNAME_LEN);
    String::from_utf8(bytes[..len].to_vec()).ok()
}

/// A `loss` element as (port, random value).
fn decode_loss(e: &RawElement) -> Option<(String, u32)> {
    let port = ifname_at(&e.key, 0)?;
    let r = e.key.get(IFNAME_LEN..IFNAME_LEN + 4)?;
    Some((port, u32::from_ne_bytes(r.try_into().ok()?)))
}

fn kernel_error(view: &LabView, action: &str, e: NftError, fix: String) -> EngineError {
    FirewallError::kernel(
        format!("lab {:?}: partition table bridge {TABLE}", view.name),
        action,
        e,
        fix,
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_back_to_ports() {
        let key = Element::concat([ifname("n3"), Value::U32(42)])
            .key_bytes()
            .unwrap();
        let raw = RawElement {
            key,
            key_end: None,
            data: None,
            flags: 0,
        };
        assert_eq!(decode_loss(&raw), Some(("n3".to_string(), 42)));
        let pair = Element::concat([ifname("n0"), ifname("n12")])
            .key_bytes()
            .unwrap();
        assert_eq!(ifname_at(&pair, 0).as_deref(), Some("n0"));
        assert_eq!(ifname_at(&pair, IFNAME_LEN).as_deref(), Some("n12"));
        assert_eq!(ifname_at(&pair, 2 * IFNAME_LEN), None);
    }

    #[test]
    fn skeleton_names_only_the_partition_table() {
        let text = skeleton();
        assert!(
            text.lines().all(|l| l.contains(&format!("bridge {TABLE}"))),
            "{text}"
        );
        assert_eq!(text.matches("@loss drop").count(), 2);
    }
}
