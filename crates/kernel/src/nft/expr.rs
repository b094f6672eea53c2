//! Rule expressions: the kernel's building blocks of a rule (`meta`,
//! `cmp`, `payload`, `lookup`, `fib`, `immediate`, `nat`, `masq`), as
//! `nft --debug=netlink` shows them, and their netlink encoding.

use std::fmt;

use super::element::Verdict;
use super::msg::*;
use super::Family;

/// A data register of the nf_tables virtual machine.
///
/// The kernel has a verdict register and 64 bytes of data registers,
/// addressed either as four 16-byte registers (`reg 1` to `reg 4`) or as
/// sixteen 4-byte ones (`reg 8` to `reg 23`). Like nft, [`Reg::word`] names
/// a 4-byte word of that space by the 16-byte register when the word
/// starts one, and by the 4-byte register otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reg(u32);

impl Reg {
    /// The verdict register (`reg 0`).
    pub const VERDICT: Reg = Reg(0);
    /// The first data register (`reg 1`), word 0.
    pub const R1: Reg = Reg(1);

    /// The register that starts at 4-byte word `word` (0 to 15) of the
    /// data registers: word 0 is `reg 1`, word 1 `reg 9`, word 4 `reg 2`.
    pub const fn word(word: u32) -> Reg {
        if word % 4 == 0 {
            Reg(1 + word / 4)
        } else {
            Reg(8 + word)
        }
    }

    /// The register's number as the kernel takes it (`NFT_REG_*`,
    /// `NFT_REG32_*`).
    pub fn number(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reg {}", self.0)
    }
}

/// What a `meta` expression loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// `iifname`: the input interface's name (16 bytes, NUL-padded).
    Iifname,
    /// `oifname`: the output interface's name (16 bytes, NUL-padded).
    Oifname,
    /// `nfproto`: the packet's family (1 byte: 2 = IPv4, 10 = IPv6).
    Nfproto,
    /// `l4proto`: the transport protocol (1 byte: 6 = tcp, 17 = udp).
    L4proto,
}

impl MetaKey {
    fn number(self) -> u32 {
        match self {
            MetaKey::Iifname => NFT_META_IIFNAME,
            MetaKey::Oifname => NFT_META_OIFNAME,
            MetaKey::Nfproto => NFT_META_NFPROTO,
            MetaKey::L4proto => NFT_META_L4PROTO,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MetaKey::Iifname => "iifname",
            MetaKey::Oifname => "oifname",
            MetaKey::Nfproto => "nfproto",
            MetaKey::L4proto => "l4proto",
        }
    }
}

/// How a `cmp` expression compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `eq`
    Eq,
    /// `neq`
    Neq,
}

/// Which header a `payload` expression reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadBase {
    /// The network header (IPv4 or IPv6).
    Network,
    /// The transport header (`th`).
    Transport,
}

/// Which address a `fib` expression looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FibAddr {
    /// `fib saddr`
    Saddr,
    /// `fib daddr`
    Daddr,
}

/// Source or destination translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// `snat`
    Snat,
    /// `dnat`
    Dnat,
}

/// One expression of a rule, as the kernel runs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `meta load KEY => DREG`
    Meta {
        /// What to load.
        key: MetaKey,
        /// Where to.
        dreg: Reg,
    },
    /// `cmp OP SREG DATA`: the rule goes on only if the register's first
    /// `data.len()` bytes compare so (a prefix when `data` is shorter
    /// than what was loaded, as for `iifname "l*"`).
    Cmp {
        /// The register.
        sreg: Reg,
        /// The comparison.
        op: CmpOp,
        /// The bytes to compare with (1 to 64).
        data: Vec<u8>,
    },
    /// `payload load LEN @ BASE + OFFSET => DREG`
    Payload {
        /// The header.
        base: PayloadBase,
        /// Byte offset in the header.
        offset: u32,
        /// Bytes to load.
        len: u32,
        /// Where to.
        dreg: Reg,
    },
    /// `lookup SREG set SET [dreg DREG]`: the rule goes on only if the key
    /// starting at `sreg` is in the set; for a map with `dreg`, the
    /// element's data is loaded there.
    Lookup {
        /// The set or map, by name, in the rule's table.
        set: String,
        /// Where the key starts.
        sreg: Reg,
        /// Where a map's data goes.
        dreg: Option<Reg>,
    },
    /// `fib ADDR type => DREG`: the address type (`RTN_*`, a 4-byte
    /// host-order number; 2 is `local`) of the packet's address.
    FibAddrType {
        /// Which address.
        addr: FibAddr,
        /// Where the type goes.
        dreg: Reg,
    },
    /// `immediate DREG DATA`: loads constant bytes.
    Immediate {
        /// Where to.
        dreg: Reg,
        /// The bytes (1 to 64).
        data: Vec<u8>,
    },
    /// A verdict: `immediate reg 0 VERDICT`.
    Verdict(Verdict),
    /// `nat KIND FAMILY addr_min ADDR [proto_min PROTO]`.
    Nat {
        /// Source or destination.
        kind: NatKind,
        /// [`Family::Ip`] or [`Family::Ip6`].
        family: Family,
        /// Register with the new address.
        addr: Reg,
        /// Register with the new port, if the port changes too.
        proto: Option<Reg>,
    },
    /// `masq`: source translation to the output interface's address.
    Masquerade,
}

impl Expr {
    /// The kernel's name of the expression.
    pub fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Payload { .. } => "payload",
            Expr::Lookup { .. } => "lookup",
            Expr::FibAddrType { .. } => "fib",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Nat { .. } => "nat",
            Expr::Masquerade => "masq",
        }
    }

    /// Why the kernel would refuse the expression, found before sending.
    pub(crate) fn check(&self) -> Result<(), String> {
        let bytes = |what: &str, data: &[u8]| {
            if data.is_empty() || data.len() > super::MAX_VALUE_LEN {
                Err(format!(
                    "{what} must be 1 to {} bytes, not {}",
                    super::MAX_VALUE_LEN,
                    data.len()
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Expr::Cmp { data, .. } => bytes("the compared data", data),
            Expr::Immediate { data, .. } => bytes("the loaded data", data),
            Expr::Lookup { set, .. } if set.is_empty() || set.len() > 255 => {
                Err("the set name must be 1 to 255 bytes".into())
            }
            Expr::Nat { family, .. } if !matches!(family, Family::Ip | Family::Ip6) => Err(
                format!("translation is to ip or ip6 addresses, not {family}"),
            ),
            _ => Ok(()),
        }
    }

    /// Appends the expression as one `NFTA_LIST_ELEM`, with its
    /// attributes in the order nft sends them. `set_id` gives the batch's
    /// id of a set that the same batch adds.
    pub(crate) fn encode(&self, w: &mut MsgWriter, set_id: impl Fn(&str) -> Option<u32>) {
        let elem = w.begin_nest(NFTA_LIST_ELEM);
        w.attr_str(NFTA_EXPR_NAME, self.name());
        let data = w.begin_nest(NFTA_EXPR_DATA);
        match self {
            Expr::Meta { key, dreg } => {
                w.attr_be32(NFTA_META_KEY, key.number());
                w.attr_be32(NFTA_META_DREG, dreg.number());
            }
            Expr::Cmp { sreg, op, data } => {
                w.attr_be32(NFTA_CMP_SREG, sreg.number());
                w.attr_be32(
                    NFTA_CMP_OP,
                    match op {
                        CmpOp::Eq => NFT_CMP_EQ,
                        CmpOp::Neq => NFT_CMP_NEQ,
                    },
                );
                put_data_value(w, NFTA_CMP_DATA, data);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                w.attr_be32(NFTA_PAYLOAD_DREG, dreg.number());
                w.attr_be32(
                    NFTA_PAYLOAD_BASE,
                    match base {
                        PayloadBase::Network => NFT_PAYLOAD_NETWORK_HEADER,
                        PayloadBase::Transport => NFT_PAYLOAD_TRANSPORT_HEADER,
                    },
                );
                w.attr_be32(NFTA_PAYLOAD_OFFSET, *offset);
                w.attr_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Lookup { set, sreg, dreg } => {
                w.attr_be32(NFTA_LOOKUP_SREG, sreg.number());
                if let Some(dreg) = dreg {
                    w.attr_be32(NFTA_LOOKUP_DREG, dreg.number());
                }
                w.attr_str(NFTA_LOOKUP_SET, set);
                if let Some(id) = set_id(set) {
                    w.attr_be32(NFTA_LOOKUP_SET_ID, id);
                }
            }
            Expr::FibAddrType { addr, dreg } => {
                w.attr_be32(
                    NFTA_FIB_FLAGS,
                    match addr {
                        FibAddr::Saddr => NFTA_FIB_F_SADDR,
                        FibAddr::Daddr => NFTA_FIB_F_DADDR,
                    },
                );
                w.attr_be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
                w.attr_be32(NFTA_FIB_DREG, dreg.number());
            }
            Expr::Immediate { dreg, data } => {
                w.attr_be32(NFTA_IMMEDIATE_DREG, dreg.number());
                put_data_value(w, NFTA_IMMEDIATE_DATA, data);
            }
            Expr::Verdict(v) => {
                w.attr_be32(NFTA_IMMEDIATE_DREG, Reg::VERDICT.number());
                let nest = w.begin_nest(NFTA_IMMEDIATE_DATA);
                put_verdict(w, v);
                w.end_nest(nest);
            }
            Expr::Nat {
                kind,
                family,
                addr,
                proto,
            } => {
                w.attr_be32(
                    NFTA_NAT_TYPE,
                    match kind {
                        NatKind::Snat => NFT_NAT_SNAT,
                        NatKind::Dnat => NFT_NAT_DNAT,
                    },
                );
                w.attr_be32(NFTA_NAT_FAMILY, u32::from(family.nfproto()));
                w.attr_be32(NFTA_NAT_REG_ADDR_MIN, addr.number());
                if let Some(proto) = proto {
                    w.attr_be32(NFTA_NAT_REG_PROTO_MIN, proto.number());
                }
            }
            // nft sends masquerade with an empty data attribute.
            Expr::Masquerade => {}
        }
        w.end_nest(data);
        w.end_nest(elem);
    }
}

/// `NFTA_DATA_VALUE` inside a nest of type `ty`.
fn put_data_value(w: &mut MsgWriter, ty: u16, data: &[u8]) {
    let nest = w.begin_nest(ty);
    w.attr(NFTA_DATA_VALUE, data);
    w.end_nest(nest);
}

/// An `NFTA_DATA_VERDICT` nest: the code, and the chain of a jump or goto.
/// Chain names were checked by the caller.
pub(crate) fn put_verdict(w: &mut MsgWriter, v: &Verdict) {
    let nest = w.begin_nest(NFTA_DATA_VERDICT);
    let (code, chain) = match v {
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Continue => (NFT_CONTINUE, None),
        Verdict::Return => (NFT_RETURN, None),
        Verdict::Jump(c) => (NFT_JUMP, Some(c)),
        Verdict::Goto(c) => (NFT_GOTO, Some(c)),
    };
    w.attr_be32(NFTA_VERDICT_CODE, code as u32);
    if let Some(chain) = chain {
        w.attr_str(NFTA_VERDICT_CHAIN, chain);
    }
    w.end_nest(nest);
}

fn hex(data: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in data {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Formats like `nft --debug=netlink`, without the brackets:
/// `lookup reg 1 set ports4 dreg 1`. Data shows as its bytes in order.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Meta { key, dreg } => write!(f, "meta load {} => {dreg}", key.name()),
            Expr::Cmp { sreg, op, data } => {
                let op = match op {
                    CmpOp::Eq => "eq",
                    CmpOp::Neq => "neq",
                };
                write!(f, "cmp {op} {sreg} {}", hex(data))
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                let base = match base {
                    PayloadBase::Network => "network",
                    PayloadBase::Transport => "transport",
                };
                write!(
                    f,
                    "payload load {len}b @ {base} header + {offset} => {dreg}"
                )
            }
            Expr::Lookup { set, sreg, dreg } => {
                write!(f, "lookup {sreg} set {set}")?;
                if let Some(d) = dreg {
                    write!(f, " d{d}")?;
                }
                Ok(())
            }
            Expr::FibAddrType { addr, dreg } => {
                let addr = match addr {
                    FibAddr::Saddr => "saddr",
                    FibAddr::Daddr => "daddr",
                };
                write!(f, "fib {addr} type => {dreg}")
            }
            Expr::Immediate { dreg, data } => write!(f, "immediate {dreg} {}", hex(data)),
            Expr::Verdict(v) => write!(f, "immediate {} {v}", Reg::VERDICT),
            Expr::Nat {
                kind,
                family,
                addr,
                proto,
            } => {
                let kind = match kind {
                    NatKind::Snat => "snat",
                    NatKind::Dnat => "dnat",
                };
                write!(f, "nat {kind} {family} addr_min {addr}")?;
                if let Some(p) = proto {
                    write!(f, " proto_min {p}")?;
                }
                Ok(())
            }
            Expr::Masquerade => f.write_str("masq"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_are_numbered_as_nft_numbers_them() {
        assert_eq!(Reg::word(0), Reg::R1);
        assert_eq!(Reg::word(1).number(), 9);
        assert_eq!(Reg::word(4).number(), 2);
        assert_eq!(Reg::word(5).number(), 13);
        assert_eq!(Reg::word(12).number(), 4);
        assert_eq!(Reg::word(15).number(), 23);
    }

    #[test]
    fn expressions_display_like_nft_debug_output() {
        let e = Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: Reg::word(1),
        };
        assert_eq!(
            e.to_string(),
            "payload load 2b @ transport header + 2 => reg 9"
        );
        let e = Expr::Lookup {
            set: "ports4".into(),
            sreg: Reg::R1,
            dreg: Some(Reg::R1),
        };
        assert_eq!(e.to_string(), "lookup reg 1 set ports4 dreg 1");
        assert_eq!(
            Expr::Verdict(Verdict::Drop).to_string(),
            "immediate reg 0 drop"
        );
        let e = Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Neq,
            data: b"l".to_vec(),
        };
        assert_eq!(e.to_string(), "cmp neq reg 1 0x6c");
    }

    #[test]
    fn empty_or_oversized_data_is_refused() {
        let cmp = |data: Vec<u8>| Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data,
        };
        assert!(cmp(vec![]).check().is_err());
        assert!(cmp(vec![0; 65]).check().is_err());
        assert!(cmp(vec![1]).check().is_ok());
        let nat = Expr::Nat {
            kind: NatKind::Dnat,
            family: Family::Inet,
            addr: Reg::R1,
            proto: None,
        };
        assert!(nat.check().unwrap_err().contains("not inet"));
    }
}
