//! [`Firewall`]: applies skeletons and commits endpoint facts in the host
//! namespace.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use netloom_kernel::nft::{
    apply_ruleset, Batch, Element, ElementData, Family, NftError, NftSocket, RawData, SetRef,
    TableRef, Value,
};

use super::elements::batch_of;
use super::guard::{guard_sets, guard_skeleton, guard_table};
use super::{
    check_id8, network_table, EndpointFirewall, FirewallError, NetworkFirewall,
    NETWORK_TABLE_PREFIX,
};

// Linux errno values (stable ABI), to read the kernel's answers without a
// libc dependency.
const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const EINVAL: i32 = 22;
const EOPNOTSUPP: i32 = 95;

/// How many times a set is read when listing it, keeping the union.
///
/// Kernel quirk: the dump of a large hash set spans several messages, and
/// the kernel walks the set afresh for each one, skipping what it already
/// sent. If the hash table is resized in between (the kernel grows it in
/// the background after many inserts), some elements come twice and others
/// not at all. A second read catches what the first missed.
const DUMP_READS: usize = 2;

/// A set's elements as kernel bytes: (key, map data).
type RawContents = BTreeSet<(Vec<u8>, Option<Vec<u8>>)>;

/// netloom's firewall in one network namespace (the host's).
///
/// Holds one nf_tables socket, opened once. Skeletons (per network, and the
/// shared guard) are applied with `nft -f`; everything per endpoint goes
/// over the socket, one transaction per call, no process spawned.
pub struct Firewall {
    nft: NftSocket,
    /// `None`: the namespace the firewall was opened in by [`Firewall::open`].
    netns: Option<PathBuf>,
}

impl Firewall {
    /// The firewall of the calling thread's network namespace.
    pub fn open() -> Result<Firewall, FirewallError> {
        let nft = NftSocket::open().map_err(|e| {
            FirewallError::kernel(
                "firewall",
                "open an nf_tables socket",
                e,
                "run as root (CAP_NET_ADMIN) on a kernel with nf_tables",
            )
        })?;
        Ok(Firewall { nft, netns: None })
    }

    /// The firewall of the network namespace at `netns` (e.g.
    /// `/proc/PID/ns/net`), entered only on short-lived threads.
    pub fn open_in(netns: &Path) -> Result<Firewall, FirewallError> {
        let nft = NftSocket::open_in(netns).map_err(|e| {
            FirewallError::kernel(
                format!("firewall in network namespace {}", netns.display()),
                "open an nf_tables socket",
                e,
                "check that the namespace exists and that this runs as root",
            )
        })?;
        Ok(Firewall {
            nft,
            netns: Some(netns.to_path_buf()),
        })
    }

    /// Creates or updates the shared guard table (one `nft` run). Safe to
    /// repeat and to run concurrently: rules are replaced, elements kept.
    pub fn ensure_guard(&mut self) -> Result<(), FirewallError> {
        self.apply(
            &guard_skeleton(),
            guard_table().to_string(),
            "create or update the anti-spoofing guard",
        )
    }

    /// Creates or updates a network's table and the guard, in one `nft`
    /// run and one transaction. Safe to repeat (e.g. with changed flags):
    /// rules are replaced, elements kept.
    pub fn create_network(&mut self, net: &NetworkFirewall) -> Result<(), FirewallError> {
        net.validate()?;
        let text = format!("{}\n{}", guard_skeleton(), net.skeleton());
        self.apply(
            &text,
            format!("{} ({})", net.label(), net.table()),
            "create or update the network's firewall",
        )?;
        tracing::debug!(network = %net.id8, bridge = %net.bridge, "firewall table applied");
        Ok(())
    }

    /// Deletes a network's table and everything in it; a missing table is
    /// fine. The guard facts of its endpoints stay: remove the endpoints
    /// first.
    pub fn remove_network(&mut self, id8: &str) -> Result<(), FirewallError> {
        check_id8(id8)?;
        let table = network_table(id8);
        self.delete_table(&table, &format!("network {id8} ({table})"))?;
        tracing::debug!(network = %id8, "firewall table removed");
        Ok(())
    }

    /// Deletes the guard table, and with it every endpoint's guard facts;
    /// a missing table is fine. For when no bridge network is left.
    pub fn remove_guard(&mut self) -> Result<(), FirewallError> {
        let table = guard_table();
        self.delete_table(&table, &table.to_string())
    }

    /// Adds an endpoint's facts (MAC, addresses, published ports) in one
    /// transaction: all of them or none. Adding what is there is fine.
    pub fn add_endpoint(
        &mut self,
        net: &NetworkFirewall,
        ep: &EndpointFirewall,
    ) -> Result<(), FirewallError> {
        let batch = ep.add_batch(net)?;
        self.nft.commit(&batch).map_err(|e| {
            let fix = match e.errno().map(|n| n as i32) {
                Some(ENOENT) => {
                    "the network's table or the guard table is missing: \
                     create the network's firewall first"
                }
                Some(EEXIST) => {
                    "a host port it publishes is already published by another endpoint \
                     of the network: remove that mapping first or pick another host port"
                }
                Some(EPERM) => "run as root (CAP_NET_ADMIN)",
                _ => "",
            };
            FirewallError::kernel(ep.label(net), "add firewall elements", e, fix)
        })?;
        tracing::debug!(network = %net.id8, veth = %ep.veth, ports = ep.ports.len(), "firewall elements added");
        Ok(())
    }

    /// Removes an endpoint's facts in one transaction. Absent elements, and
    /// a missing network or guard table, are fine.
    pub fn remove_endpoint(
        &mut self,
        net: &NetworkFirewall,
        ep: &EndpointFirewall,
    ) -> Result<(), FirewallError> {
        let facts = ep.facts(net, false)?;
        let fail =
            |e: NftError| FirewallError::kernel(ep.label(net), "remove firewall elements", e, "");
        let result = match self.nft.commit(&batch_of(facts.clone(), true)) {
            // A table is gone (the network was removed first): remove the
            // rest from the tables that are left.
            Err(e) if e.errno().map(|n| n as i32) == Some(ENOENT) => {
                let mut tables: HashMap<TableRef, bool> = HashMap::new();
                let mut left = Vec::new();
                for (set, element) in facts {
                    let table = set.table_ref();
                    let exists = match tables.get(&table) {
                        Some(&known) => known,
                        None => {
                            let found = self.exists(&table, &ep.label(net))?;
                            tables.insert(table, found);
                            found
                        }
                    };
                    if exists {
                        left.push((set, element));
                    }
                }
                self.nft.commit(&batch_of(left, true)).map_err(fail)
            }
            // Kernels before 6.3 have no `destroy`: delete one by one.
            Err(e) if matches!(e.errno().map(|n| n as i32), Some(EINVAL | EOPNOTSUPP)) => {
                self.delete_each(facts).map_err(fail)
            }
            other => other.map_err(fail),
        };
        result?;
        tracing::debug!(network = %net.id8, veth = %ep.veth, "firewall elements removed");
        Ok(())
    }

    /// The elements the endpoint should have that the kernel lacks (empty
    /// when it is all there). Reads whole sets, twice (a dump of a large
    /// set can miss elements while the kernel resizes it):
    /// for checks, not hot paths.
    pub fn missing_elements(
        &mut self,
        net: &NetworkFirewall,
        ep: &EndpointFirewall,
    ) -> Result<Vec<(SetRef, Element)>, FirewallError> {
        let want = ep.elements(net)?;
        let mut present: HashMap<SetRef, RawContents> = HashMap::new();
        let mut missing = Vec::new();
        for (set, element) in want {
            if !present.contains_key(&set) {
                let have = self.raw_contents(&set, &ep.label(net))?;
                present.insert(set.clone(), have);
            }
            if !present[&set].contains(&element_bytes(&element)) {
                missing.push((set, element));
            }
        }
        Ok(missing)
    }

    /// The `id8` of every network that has a table here.
    pub fn network_ids(&mut self) -> Result<Vec<String>, FirewallError> {
        let tables = self
            .nft
            .list_tables()
            .map_err(|e| FirewallError::kernel("firewall", "list nft tables", e, ""))?;
        let mut ids: Vec<String> = tables
            .into_iter()
            .filter(|t| t.family == Family::Inet)
            .filter_map(|t| t.name.strip_prefix(NETWORK_TABLE_PREFIX).map(str::to_owned))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The veths that have facts in the guard (any of its sets), read as
    /// [`Firewall::missing_elements`] reads.
    pub fn guarded_ports(&mut self) -> Result<BTreeSet<String>, FirewallError> {
        let mut ports = BTreeSet::new();
        let object = guard_table().to_string();
        if !self.exists(&guard_table(), &object)? {
            return Ok(ports);
        }
        for set in guard_sets() {
            for _ in 0..DUMP_READS {
                let elements = self
                    .nft
                    .list_elements(&set)
                    .map_err(|e| FirewallError::kernel(&object, "list guard facts", e, ""))?;
                for e in elements {
                    if let Some(Value::Ifname(name)) = e.key.first() {
                        ports.insert(name.clone());
                    }
                }
            }
        }
        Ok(ports)
    }

    /// Runs `nft -f` with `text` in the firewall's namespace.
    fn apply(&self, text: &str, object: String, action: &str) -> Result<(), FirewallError> {
        apply_ruleset(self.netns.as_deref(), text).map_err(|e| {
            let fix = match &e {
                NftError::RulesetRejected { .. } => {
                    "the kernel needs nf_tables with nat, fib, conntrack and bridge \
                     support (modules nf_tables, nft_nat, nft_fib_inet, nft_ct, \
                     nf_tables_bridge); if they are there, this is a netloom bug: report it"
                }
                _ => "",
            };
            FirewallError::kernel(object, action, e, fix)
        })
    }

    fn delete_table(&mut self, table: &TableRef, object: &str) -> Result<(), FirewallError> {
        match self.nft.delete_table(table) {
            Ok(()) => Ok(()),
            Err(e) if e.errno().map(|n| n as i32) == Some(ENOENT) => Ok(()),
            Err(e) => Err(FirewallError::kernel(object, "delete table", e, "")),
        }
    }

    fn exists(&mut self, table: &TableRef, object: &str) -> Result<bool, FirewallError> {
        self.nft
            .table_exists(table)
            .map_err(|e| FirewallError::kernel(object, format!("look up {table}"), e, ""))
    }

    /// Deletes elements one transaction each, skipping absent ones and
    /// sets whose table is gone.
    fn delete_each(&mut self, facts: Vec<(SetRef, Element)>) -> Result<(), NftError> {
        for (set, mut element) in facts {
            element.data = None;
            match self.nft.commit(Batch::new().delete(&set, [element])) {
                Err(e) if e.errno().map(|n| n as i32) == Some(ENOENT) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// A set's elements as kernel bytes (key, data); empty if its table is
    /// missing.
    fn raw_contents(&mut self, set: &SetRef, object: &str) -> Result<RawContents, FirewallError> {
        if !self.exists(&set.table_ref(), object)? {
            return Ok(RawContents::new());
        }
        let mut out = RawContents::new();
        for _ in 0..DUMP_READS {
            let raw = self
                .nft
                .list_raw_elements(set)
                .map_err(|e| FirewallError::kernel(object, format!("list {set}"), e, ""))?;
            out.extend(raw.into_iter().map(|r| {
                let data = match r.data {
                    Some(RawData::Value(v)) => Some(v),
                    _ => None,
                };
                (r.key, data)
            }));
        }
        Ok(out)
    }
}

/// An element as kernel bytes, to compare with what the kernel lists.
fn element_bytes(e: &Element) -> (Vec<u8>, Option<Vec<u8>>) {
    let key = e.key_bytes().unwrap_or_default();
    let data = match &e.data {
        Some(ElementData::Values(v)) => netloom_kernel::nft::encode_values(v).ok(),
        _ => None,
    };
    (key, data)
}
