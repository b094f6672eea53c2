//! nftables for netloom.
//!
//! Two paths, by design (see DESIGN.md, "Kernel access"):
//!
//! * **Skeletons**, once per network: tables of sets, chains and rules.
//!   Either readable nft text applied atomically by [`apply_ruleset`],
//!   which runs `nft -f -` (the only place a process is spawned), or,
//!   where that process costs too much, a [`TableDef`] built in code and
//!   added in-process in one transaction by [`Batch::add_table`]; it sends
//!   what nft would send for the same text.
//! * **Facts**, per endpoint (addresses, published ports, partition cuts):
//!   elements of the skeleton's sets and maps, added and removed in-process
//!   over netlink by an [`NftSocket`]. Each call is one nf_tables
//!   transaction; a [`Batch`] puts several operations across sets into one,
//!   so an endpoint's address and its ports land together or not at all.
//!   The cost does not grow with the number of elements already present.
//!
//! All of netloom's rules live in its own tables, whose names start with
//! [`TABLE_PREFIX`]. This module never parses foreign tables and refuses to
//! delete them.
//!
//! ```no_run
//! use netloom_kernel::nft::{apply_ruleset, Batch, Element, Family, NftSocket, SetRef, Value};
//! use std::net::Ipv4Addr;
//!
//! # fn main() -> Result<(), netloom_kernel::nft::NftError> {
//! apply_ruleset(None, "table ip netloom-nat {
//!     map pub4 { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
//!     set hosts4 { type ipv4_addr; }
//! }")?;
//! let mut nft = NftSocket::open()?;
//! let addr = Ipv4Addr::new(10, 0, 0, 5);
//! let pub4 = SetRef::new(Family::Ip, "netloom-nat", "pub4");
//! let hosts4 = SetRef::new(Family::Ip, "netloom-nat", "hosts4");
//! let mut batch = Batch::new();
//! batch.add(&hosts4, [Element::new(addr.into())]);
//! batch.add(&pub4, [Element::concat([Value::Ipv4Addr(Ipv4Addr::new(192, 0, 2, 1)), Value::InetService(8080)])
//!     .with_data([addr.into(), Value::InetService(80)])]);
//! nft.commit(&batch)?;
//! # Ok(()) }
//! ```

mod decode;
mod diagnose;
mod element;
mod encode;
mod error;
mod expr;
pub(crate) mod msg;
mod rules;
mod ruleset;
mod socket;
mod value;

use std::fmt;

pub use decode::{RawData, RawElement, SetInfo};
pub use element::{Element, ElementData, Verdict};
pub use error::NftError;
pub use expr::{CmpOp, Expr, FibAddr, MetaKey, NatKind, PayloadBase, Reg};
pub use rules::{
    ChainDef, ChainPolicy, ChainType, Hook, KeyField, NameMatch, Rule, SetDef, TableDef,
    PRIORITY_DSTNAT, PRIORITY_FILTER, PRIORITY_SRCNAT,
};
pub use ruleset::{apply_ruleset, RulesetJob};
pub use socket::NftSocket;
pub use value::{decode_values, encode_values, Value, ValueKind, IFNAME_LEN, MAX_VALUE_LEN};

/// Every netloom table's name starts with this.
pub const TABLE_PREFIX: &str = "netloom";

/// An nftables address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `inet`: IPv4 and IPv6.
    Inet,
    /// `ip`: IPv4.
    Ip,
    /// `ip6`: IPv6.
    Ip6,
    /// `arp`.
    Arp,
    /// `bridge`.
    Bridge,
    /// `netdev`: ingress/egress of one device.
    Netdev,
}

impl Family {
    /// The kernel's number for the family (`NFPROTO_*`).
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Arp => 3,
            Family::Netdev => 5,
            Family::Bridge => 7,
            Family::Ip6 => 10,
        }
    }

    /// The family with kernel number `n`.
    pub fn from_nfproto(n: u8) -> Option<Family> {
        [
            Family::Inet,
            Family::Ip,
            Family::Arp,
            Family::Netdev,
            Family::Bridge,
            Family::Ip6,
        ]
        .into_iter()
        .find(|f| f.nfproto() == n)
    }

    /// nft's name for the family.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A table, by family and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// Its family.
    pub family: Family,
    /// Its name.
    pub name: String,
}

impl TableRef {
    /// A table reference.
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        TableRef {
            family,
            name: name.into(),
        }
    }

    /// Whether the table is netloom's (its name starts with [`TABLE_PREFIX`]).
    pub fn is_netloom(&self) -> bool {
        self.name.starts_with(TABLE_PREFIX)
    }
}

/// Formats as `nft table inet netloom-nat`.
impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nft table {} {}", self.family, self.name)
    }
}

/// A named set or map in a table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SetRef {
    /// The table's family.
    pub family: Family,
    /// The table's name.
    pub table: String,
    /// The set's (or map's) name.
    pub set: String,
}

impl SetRef {
    /// A set reference.
    pub fn new(family: Family, table: impl Into<String>, set: impl Into<String>) -> Self {
        SetRef {
            family,
            table: table.into(),
            set: set.into(),
        }
    }

    /// The table that holds the set.
    pub fn table_ref(&self) -> TableRef {
        TableRef::new(self.family, self.table.clone())
    }
}

/// Formats as `nft set inet netloom-nat/pub4`.
impl fmt::Display for SetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nft set {} {}/{}", self.family, self.table, self.set)
    }
}

/// What to do with elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementOp {
    /// Add; an element that is already there (with the same data) is fine,
    /// like `nft add element`.
    Add,
    /// Add; an element that is already there is an error (`EEXIST`), like
    /// `nft create element`.
    Create,
    /// Delete; an absent element is an error (`ENOENT`).
    Delete,
    /// Delete; an absent element is fine (Linux 6.3+, `NFT_MSG_DESTROYSETELEM`).
    Destroy,
}

impl ElementOp {
    pub(crate) fn verb(self) -> &'static str {
        match self {
            ElementOp::Add => "add",
            ElementOp::Create => "create",
            ElementOp::Delete => "delete",
            ElementOp::Destroy => "destroy",
        }
    }
}

/// One operation of a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Add or delete elements of one set.
    Elements {
        /// What to do.
        op: ElementOp,
        /// Where.
        set: SetRef,
        /// The elements.
        elements: Vec<Element>,
    },
    /// Remove every element of a set.
    Flush {
        /// The set.
        set: SetRef,
    },
    /// Delete a netloom table and everything in it.
    DeleteTable {
        /// The table.
        table: TableRef,
    },
    /// Add a netloom table with its sets, elements, chains and rules (see
    /// [`TableDef`]).
    AddTable(TableDef),
}

impl BatchOp {
    /// Whether the operation takes something out of the ruleset.
    pub fn removes(&self) -> bool {
        match self {
            BatchOp::Elements { op, .. } => matches!(op, ElementOp::Delete | ElementOp::Destroy),
            BatchOp::Flush { .. } | BatchOp::DeleteTable { .. } => true,
            BatchOp::AddTable(_) => false,
        }
    }
}

/// Several operations that the kernel applies as one transaction: all of
/// them or, if any fails, none. Commit with [`NftSocket::commit`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub(crate) ops: Vec<BatchOp>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds elements to `set` (no error if one is already there).
    pub fn add(&mut self, set: &SetRef, elements: impl IntoIterator<Item = Element>) -> &mut Self {
        self.elements(ElementOp::Add, set, elements)
    }

    /// Adds elements to `set`; fails if one is already there.
    pub fn create(
        &mut self,
        set: &SetRef,
        elements: impl IntoIterator<Item = Element>,
    ) -> &mut Self {
        self.elements(ElementOp::Create, set, elements)
    }

    /// Deletes elements from `set`; fails if one is absent.
    pub fn delete(
        &mut self,
        set: &SetRef,
        elements: impl IntoIterator<Item = Element>,
    ) -> &mut Self {
        self.elements(ElementOp::Delete, set, elements)
    }

    /// Deletes elements from `set`; absent ones are ignored (Linux 6.3+).
    pub fn destroy(
        &mut self,
        set: &SetRef,
        elements: impl IntoIterator<Item = Element>,
    ) -> &mut Self {
        self.elements(ElementOp::Destroy, set, elements)
    }

    /// Applies `op` to elements of `set`.
    pub fn elements(
        &mut self,
        op: ElementOp,
        set: &SetRef,
        elements: impl IntoIterator<Item = Element>,
    ) -> &mut Self {
        self.ops.push(BatchOp::Elements {
            op,
            set: set.clone(),
            elements: elements.into_iter().collect(),
        });
        self
    }

    /// Removes every element of `set`.
    pub fn flush(&mut self, set: &SetRef) -> &mut Self {
        self.ops.push(BatchOp::Flush { set: set.clone() });
        self
    }

    /// Deletes a table. Only netloom tables: [`NftSocket::commit`] refuses
    /// a batch that names another.
    pub fn delete_table(&mut self, table: &TableRef) -> &mut Self {
        self.ops.push(BatchOp::DeleteTable {
            table: table.clone(),
        });
        self
    }

    /// Adds a table with everything in it; only netloom tables, like
    /// [`Batch::delete_table`].
    pub fn add_table(&mut self, table: TableDef) -> &mut Self {
        self.ops.push(BatchOp::AddTable(table));
        self
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
