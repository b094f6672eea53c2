//! Whole tables described in code: sets and maps with their initial
//! elements, base chains and rules, added in one nf_tables transaction
//! ([`super::Batch::add_table`]) instead of by running `nft -f`.
//!
//! What is sent is what nft itself sends for the same ruleset (objects in
//! nft's order, the same expressions, registers and set attributes), so
//! `nft list ruleset` prints it back exactly as if nft had loaded it.
//!
//! ```no_run
//! use netloom_kernel::nft::*;
//!
//! # fn main() -> Result<(), NftError> {
//! // table inet netloom-lab {
//! //     map ports4 { type inet_proto . inet_service : ipv4_addr; }
//! //     chain prerouting {
//! //         type nat hook prerouting priority dstnat; policy accept;
//! //         iifname "uplink" meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
//! //     }
//! // }
//! let key = [KeyField::L4proto, KeyField::ThDport];
//! let table = TableDef::new(Family::Inet, "netloom-lab")
//!     .set(SetDef::map("ports4", key.map(KeyField::kind), [ValueKind::Ipv4Addr]))
//!     .chain(ChainDef::new("prerouting", ChainType::Nat, Hook::Prerouting, PRIORITY_DSTNAT))
//!     .rule(
//!         Rule::new("prerouting")
//!             .iifname(NameMatch::Is("uplink".into()))
//!             .nfproto(Family::Ip)
//!             .dnat_map(Family::Ip, &key, "ports4", false),
//!     );
//! NftSocket::open()?.commit(Batch::new().add_table(table))?;
//! # Ok(()) }
//! ```

use std::net::IpAddr;

use super::element::{Element, Verdict};
use super::expr::{CmpOp, Expr, FibAddr, MetaKey, NatKind, PayloadBase, Reg};
use super::msg::NFT_TYPE_BITS;
use super::value::{reg_align, Value, ValueKind};
use super::{Family, TableRef};

/// nft's `dstnat` priority (NAT before routing).
pub const PRIORITY_DSTNAT: i32 = -100;
/// nft's `srcnat` priority (NAT after routing).
pub const PRIORITY_SRCNAT: i32 = 100;
/// nft's `filter` priority.
pub const PRIORITY_FILTER: i32 = 0;

/// A table and what goes in it, added as one part of a
/// [`super::Batch`].
///
/// By default this is what `nft -f` does with a `table FAMILY NAME { ... }`
/// block: the table is made if it is missing and added to if it exists;
/// sets and chains that exist with the same definition are kept, and the
/// rules are appended (so adding the same definition twice leaves every
/// rule there twice). With [`TableDef::exclusive`] it is `nft create
/// table`: the batch fails with `EEXIST` if the table exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    /// The table.
    pub table: TableRef,
    /// Whether an existing table is an error.
    pub exclusive: bool,
    /// Its sets and maps, in order.
    pub sets: Vec<SetDef>,
    /// Its base chains, in order.
    pub chains: Vec<ChainDef>,
    /// Its rules, in order (each appended to its chain).
    pub rules: Vec<Rule>,
}

impl TableDef {
    /// An empty table definition.
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        TableDef {
            table: TableRef::new(family, name),
            exclusive: false,
            sets: Vec::new(),
            chains: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// Makes an existing table an error (`EEXIST`) instead of adding to it.
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// Adds a set or map.
    pub fn set(mut self, set: SetDef) -> Self {
        self.sets.push(set);
        self
    }

    /// Adds a base chain.
    pub fn chain(mut self, chain: ChainDef) -> Self {
        self.chains.push(chain);
        self
    }

    /// Appends a rule to its chain.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The set or map called `name`, if the definition has one.
    pub fn find_set(&self, name: &str) -> Option<&SetDef> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// A set, or a map when it has data types, with its initial elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetDef {
    /// Its name.
    pub name: String,
    /// The key's types: one, or several for a concatenation
    /// (`inet_proto . inet_service`).
    pub key: Vec<ValueKind>,
    /// A map's data types (`ipv4_addr . inet_service`); `None` for a set.
    pub data: Option<Vec<ValueKind>>,
    /// `flags interval`: elements are ranges.
    pub interval: bool,
    /// Elements to add with it.
    pub elements: Vec<Element>,
}

impl SetDef {
    /// A set with keys of the given types.
    pub fn set(name: impl Into<String>, key: impl IntoIterator<Item = ValueKind>) -> Self {
        SetDef {
            name: name.into(),
            key: key.into_iter().collect(),
            data: None,
            interval: false,
            elements: Vec::new(),
        }
    }

    /// A map from keys of the types `key` to data of the types `data`.
    pub fn map(
        name: impl Into<String>,
        key: impl IntoIterator<Item = ValueKind>,
        data: impl IntoIterator<Item = ValueKind>,
    ) -> Self {
        SetDef {
            data: Some(data.into_iter().collect()),
            ..SetDef::set(name, key)
        }
    }

    /// Makes it an interval set (`flags interval`).
    pub fn interval(mut self) -> Self {
        self.interval = true;
        self
    }

    /// Adds initial elements.
    pub fn elements(mut self, elements: impl IntoIterator<Item = Element>) -> Self {
        self.elements.extend(elements);
        self
    }

    /// The key's length in bytes, its nft type id, and its components'
    /// unpadded lengths.
    pub(crate) fn key_shape(&self) -> Result<Shape, String> {
        shape(&self.key).map_err(|e| format!("key: {e}"))
    }

    /// The data's length and type id, for maps.
    pub(crate) fn data_shape(&self) -> Result<Option<Shape>, String> {
        self.data
            .as_deref()
            .map(|d| shape(d).map_err(|e| format!("data: {e}")))
            .transpose()
    }
}

/// The layout of a key or map data of some types.
pub(crate) struct Shape {
    /// Length in bytes (concatenated components padded to 4 bytes each).
    pub(crate) len: usize,
    /// nft's type id: the components' ids, 6 bits each, first one highest.
    pub(crate) type_id: u32,
    /// The components' unpadded lengths.
    pub(crate) field_lens: Vec<usize>,
}

fn shape(kinds: &[ValueKind]) -> Result<Shape, String> {
    if kinds.is_empty() {
        return Err("no types given".into());
    }
    if kinds.len() > 5 {
        return Err(format!(
            "{} components; nft type ids hold at most 5",
            kinds.len()
        ));
    }
    let mut field_lens = Vec::with_capacity(kinds.len());
    let mut type_id = 0;
    for k in kinds {
        let len = k
            .byte_len()
            .ok_or_else(|| format!("type {} has no fixed length", k.nft_name()))?;
        field_lens.push(len);
        type_id = (type_id << NFT_TYPE_BITS) | k.nft_type_id();
    }
    let len = match field_lens.as_slice() {
        [one] => *one,
        many => many.iter().map(|&l| reg_align(l)).sum(),
    };
    if len > super::MAX_VALUE_LEN {
        return Err(format!(
            "{len} bytes is longer than the kernel's limit of {}",
            super::MAX_VALUE_LEN
        ));
    }
    Ok(Shape {
        len,
        type_id,
        field_lens,
    })
}

/// The type of a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainType {
    /// `filter`
    Filter,
    /// `nat`
    Nat,
    /// `route`
    Route,
}

impl ChainType {
    /// nft's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// Where a base chain hooks into the ip, ip6 and inet families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `prerouting`
    Prerouting,
    /// `input`
    Input,
    /// `forward`
    Forward,
    /// `output`
    Output,
    /// `postrouting`
    Postrouting,
}

impl Hook {
    /// The kernel's number (`NF_INET_*`).
    pub fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }

    /// nft's name for the hook.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// What a base chain does with a packet that no rule decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainPolicy {
    /// `policy accept`
    Accept,
    /// `policy drop`
    Drop,
}

/// A base chain: `type T hook H priority P; policy accept;`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainDef {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: ChainType,
    /// Its hook.
    pub hook: Hook,
    /// Its priority (lower runs first), e.g. [`PRIORITY_DSTNAT`].
    pub priority: i32,
    /// Its policy.
    pub policy: ChainPolicy,
}

impl ChainDef {
    /// A base chain with policy accept.
    pub fn new(name: impl Into<String>, kind: ChainType, hook: Hook, priority: i32) -> Self {
        ChainDef {
            name: name.into(),
            kind,
            hook,
            priority,
            policy: ChainPolicy::Accept,
        }
    }

    /// The chain with another policy.
    pub fn policy(mut self, policy: ChainPolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// How an interface name is matched.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NameMatch {
    /// `iifname "eth0"`
    Is(String),
    /// `iifname != "eth0"`
    IsNot(String),
    /// `iifname "eth*"`: the name starts with these bytes.
    StartsWith(String),
}

/// A component of a lookup key, loaded from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyField {
    /// `meta l4proto` (an `inet_proto`).
    L4proto,
    /// `th dport` (an `inet_service`).
    ThDport,
}

impl KeyField {
    /// The component's type, as a set's key declares it.
    pub fn kind(self) -> ValueKind {
        match self {
            KeyField::L4proto => ValueKind::InetProto,
            KeyField::ThDport => ValueKind::InetService,
        }
    }

    fn load(self, dreg: Reg) -> Expr {
        match self {
            KeyField::L4proto => Expr::Meta {
                key: MetaKey::L4proto,
                dreg,
            },
            KeyField::ThDport => Expr::Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                dreg,
            },
        }
    }
}

/// One rule: expressions the kernel runs in order, appended to a chain.
///
/// Build it from [`Expr`]s, or with the methods named after nft's
/// statements, which emit the expressions nft emits for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    chain: String,
    exprs: Vec<Expr>,
    /// The first mistake made while building, reported when encoding.
    invalid: Option<String>,
}

impl Rule {
    /// An empty rule for `chain`.
    pub fn new(chain: impl Into<String>) -> Self {
        Rule {
            chain: chain.into(),
            exprs: Vec::new(),
            invalid: None,
        }
    }

    /// Its chain.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Its expressions.
    pub fn exprs(&self) -> &[Expr] {
        &self.exprs
    }

    /// Why it cannot be sent, if a builder method was given a bad value.
    pub fn invalid(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    /// Appends an expression.
    pub fn expr(mut self, e: Expr) -> Self {
        self.exprs.push(e);
        self
    }

    fn fail(mut self, why: String) -> Self {
        self.invalid.get_or_insert(why);
        self
    }

    fn name_match(self, key: MetaKey, m: NameMatch) -> Self {
        let (op, data) = match &m {
            NameMatch::Is(n) | NameMatch::IsNot(n) => {
                let op = if matches!(m, NameMatch::Is(_)) {
                    CmpOp::Eq
                } else {
                    CmpOp::Neq
                };
                match Value::Ifname(n.clone()).to_bytes() {
                    Ok(b) => (op, b),
                    Err(e) => return self.fail(e),
                }
            }
            NameMatch::StartsWith(p) => {
                if p.is_empty() || p.len() >= super::IFNAME_LEN || p.contains('\0') {
                    return self.fail(format!(
                        "interface name prefix {p:?} must be 1 to {} bytes without NUL",
                        super::IFNAME_LEN - 1
                    ));
                }
                (CmpOp::Eq, p.as_bytes().to_vec())
            }
        };
        self.expr(Expr::Meta { key, dreg: Reg::R1 })
            .expr(Expr::Cmp {
                sreg: Reg::R1,
                op,
                data,
            })
    }

    /// Loads with `load` (into `reg 1`) and goes on only if the loaded
    /// bytes equal `data`.
    fn loaded_eq(self, load: Expr, data: Vec<u8>) -> Self {
        self.expr(load).expr(Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data,
        })
    }

    /// `iifname "NAME"`, `iifname != "NAME"`, `iifname "PREFIX*"`.
    pub fn iifname(self, m: NameMatch) -> Self {
        self.name_match(MetaKey::Iifname, m)
    }

    /// `oifname "NAME"`, `oifname != "NAME"`, `oifname "PREFIX*"`.
    pub fn oifname(self, m: NameMatch) -> Self {
        self.name_match(MetaKey::Oifname, m)
    }

    /// `meta nfproto ipv4` ([`Family::Ip`]) or `ipv6` ([`Family::Ip6`]).
    pub fn nfproto(self, family: Family) -> Self {
        if !matches!(family, Family::Ip | Family::Ip6) {
            return self.fail(format!("meta nfproto is ipv4 or ipv6, not {family}"));
        }
        self.loaded_eq(
            Expr::Meta {
                key: MetaKey::Nfproto,
                dreg: Reg::R1,
            },
            vec![family.nfproto()],
        )
    }

    /// `ip saddr ADDR` or `ip6 saddr ADDR`. In an `inet` table, precede
    /// it with [`Rule::nfproto`], as nft does.
    pub fn saddr(self, addr: IpAddr) -> Self {
        let (offset, data) = match addr {
            IpAddr::V4(a) => (12, a.octets().to_vec()),
            IpAddr::V6(a) => (8, a.octets().to_vec()),
        };
        let load = Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len: data.len() as u32,
            dreg: Reg::R1,
        };
        self.loaded_eq(load, data)
    }

    /// `icmpv6 type TYPE` (with the `meta l4proto ipv6-icmp` nft adds):
    /// the packet is ICMPv6 of this type. Extension headers before the
    /// ICMPv6 header (as a listener report's hop-by-hop option) are
    /// skipped, in the `bridge` family as well.
    pub fn icmpv6_type(self, kind: u8) -> Self {
        const IPPROTO_ICMPV6: u8 = 58;
        let l4proto = Expr::Meta {
            key: MetaKey::L4proto,
            dreg: Reg::R1,
        };
        let first_byte = Expr::Payload {
            base: PayloadBase::Transport,
            offset: 0,
            len: 1,
            dreg: Reg::R1,
        };
        self.loaded_eq(l4proto, vec![IPPROTO_ICMPV6])
            .loaded_eq(first_byte, vec![kind])
    }

    /// `fib daddr type local`: the destination is an address of this host.
    pub fn fib_daddr_local(self) -> Self {
        const RTN_LOCAL: u32 = 2;
        let load = Expr::FibAddrType {
            addr: FibAddr::Daddr,
            dreg: Reg::R1,
        };
        self.loaded_eq(load, RTN_LOCAL.to_ne_bytes().to_vec())
    }

    /// Loads `key` from the packet into the registers from `reg 1` on,
    /// each component in its own 4-byte words, as nft lays out a
    /// concatenation.
    fn load_key(mut self, key: &[KeyField]) -> Self {
        if key.is_empty() {
            return self.fail("a lookup key needs at least one component".into());
        }
        let mut word = 0;
        for f in key {
            self = self.expr(f.load(Reg::word(word)));
            let len = f.kind().byte_len().unwrap_or(4);
            word += reg_align(len) as u32 / 4;
        }
        self
    }

    /// `KEY @SET`, e.g. `meta l4proto . th dport @ports`: the packet's
    /// key is in the set.
    pub fn key_in(self, key: &[KeyField], set: impl Into<String>) -> Self {
        self.load_key(key).expr(Expr::Lookup {
            set: set.into(),
            sreg: Reg::R1,
            dreg: None,
        })
    }

    /// `dnat ip to KEY map @MAP` (or `ip6`, after `family`): translates
    /// the destination to the map's data for the packet's key: an address
    /// of the family, followed by an `inet_service` port when `with_port`.
    pub fn dnat_map(
        self,
        family: Family,
        key: &[KeyField],
        map: impl Into<String>,
        with_port: bool,
    ) -> Self {
        let addr_words = match family {
            Family::Ip => 1,
            Family::Ip6 => 4,
            other => return self.fail(format!("dnat is to ip or ip6 addresses, not {other}")),
        };
        self.load_key(key)
            .expr(Expr::Lookup {
                set: map.into(),
                sreg: Reg::R1,
                dreg: Some(Reg::R1),
            })
            .expr(Expr::Nat {
                kind: NatKind::Dnat,
                family,
                addr: Reg::R1,
                proto: with_port.then_some(Reg::word(addr_words)),
            })
    }

    /// `dnat ip to ADDR` or `dnat ip6 to ADDR`.
    pub fn dnat_to(self, addr: IpAddr) -> Self {
        let (family, data) = match addr {
            IpAddr::V4(a) => (Family::Ip, a.octets().to_vec()),
            IpAddr::V6(a) => (Family::Ip6, a.octets().to_vec()),
        };
        self.expr(Expr::Immediate {
            dreg: Reg::R1,
            data,
        })
        .expr(Expr::Nat {
            kind: NatKind::Dnat,
            family,
            addr: Reg::R1,
            proto: None,
        })
    }

    /// `masquerade`
    pub fn masquerade(self) -> Self {
        self.expr(Expr::Masquerade)
    }

    /// A verdict: `accept`, `drop`, `jump CHAIN`, ...
    pub fn verdict(self, v: Verdict) -> Self {
        self.expr(Expr::Verdict(v))
    }

    /// `drop`
    pub fn drop(self) -> Self {
        self.verdict(Verdict::Drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_types_pack_six_bits_per_component() {
        let s = shape(&[ValueKind::InetProto, ValueKind::InetService]).unwrap();
        assert_eq!((s.len, s.type_id), (8, 0x30d));
        assert_eq!(s.field_lens, vec![1, 2]);
        let s = shape(&[ValueKind::Ipv6Addr, ValueKind::InetService]).unwrap();
        assert_eq!((s.len, s.type_id), (20, 0x20d));
        let s = shape(&[ValueKind::InetService]).unwrap();
        assert_eq!((s.len, s.type_id), (2, 13));
        assert!(shape(&[ValueKind::Integer]).is_err());
        assert!(shape(&[]).is_err());
    }

    #[test]
    fn statements_emit_what_nft_emits() {
        let key = [KeyField::L4proto, KeyField::ThDport];
        let r = Rule::new("prerouting")
            .iifname(NameMatch::Is("up0".into()))
            .nfproto(Family::Ip6)
            .dnat_map(Family::Ip6, &key, "ports6", true);
        let shown: Vec<String> = r.exprs().iter().map(Expr::to_string).collect();
        assert_eq!(
            shown,
            [
                "meta load iifname => reg 1",
                "cmp eq reg 1 0x75703000000000000000000000000000",
                "meta load nfproto => reg 1",
                "cmp eq reg 1 0x0a",
                "meta load l4proto => reg 1",
                "payload load 2b @ transport header + 2 => reg 9",
                "lookup reg 1 set ports6 dreg 1",
                "nat dnat ip6 addr_min reg 1 proto_min reg 2",
            ]
        );
        assert_eq!(r.invalid(), None);
        let r = Rule::new("forward")
            .iifname(NameMatch::StartsWith("l".into()))
            .drop();
        assert_eq!(r.exprs()[1].to_string(), "cmp eq reg 1 0x6c");
        assert_eq!(r.exprs()[2].to_string(), "immediate reg 0 drop");
    }

    #[test]
    fn bad_values_make_the_rule_invalid() {
        let r = Rule::new("c").oifname(NameMatch::Is("a-very-long-ifname".into()));
        assert!(r.invalid().unwrap().contains("1 to 15 bytes"));
        let r = Rule::new("c").iifname(NameMatch::StartsWith(String::new()));
        assert!(r.invalid().unwrap().contains("prefix"));
        let r = Rule::new("c").dnat_map(Family::Inet, &[KeyField::ThDport], "m", false);
        assert!(r.invalid().unwrap().contains("not inet"));
    }
}
