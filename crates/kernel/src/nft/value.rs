//! Typed set-element values and their kernel byte layout.
//!
//! nf_tables stores keys and map data as plain bytes. A single value is
//! stored at its natural length (an `inet_service` key is 2 bytes); in a
//! concatenation (`ipv4_addr . inet_service`) every component is padded
//! with zeros to a multiple of 4 bytes (one 32-bit register each), so that
//! key is 4 + 4 = 8 bytes.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Size of an interface name in the kernel (`IFNAMSIZ`), NUL included.
pub const IFNAME_LEN: usize = 16;

/// Longest key or data value the kernel accepts (`NFT_DATA_VALUE_MAXLEN`).
pub const MAX_VALUE_LEN: usize = 64;

/// One typed value: a whole key, or one component of a concatenation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// nft `ipv4_addr`: 4 bytes, network byte order.
    Ipv4Addr(Ipv4Addr),
    /// nft `ipv6_addr`: 16 bytes, network byte order.
    Ipv6Addr(Ipv6Addr),
    /// nft `ether_addr`: 6 bytes.
    EtherAddr([u8; 6]),
    /// nft `inet_proto`: 1 byte (6 = tcp, 17 = udp).
    InetProto(u8),
    /// nft `inet_service`: a port, 2 bytes in network byte order.
    InetService(u16),
    /// nft `ifname`: 16 bytes, the name NUL-padded (at most 15 bytes long).
    Ifname(String),
    /// nft `mark`: 4 bytes in host byte order.
    Mark(u32),
    /// A 32-bit nft `integer` in host byte order (e.g. a `meta` field).
    U32(u32),
    /// Bytes taken as they are: for types this module does not know.
    Bytes(Vec<u8>),
}

/// The type of a [`Value`], as nft names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// `ipv4_addr`
    Ipv4Addr,
    /// `ipv6_addr`
    Ipv6Addr,
    /// `ether_addr`
    EtherAddr,
    /// `inet_proto`
    InetProto,
    /// `inet_service`
    InetService,
    /// `ifname`
    Ifname,
    /// `mark`
    Mark,
    /// `integer` (decoded as [`Value::U32`] when 4 bytes long)
    Integer,
}

impl Value {
    /// This value's kind.
    pub fn kind(&self) -> Option<ValueKind> {
        Some(match self {
            Value::Ipv4Addr(_) => ValueKind::Ipv4Addr,
            Value::Ipv6Addr(_) => ValueKind::Ipv6Addr,
            Value::EtherAddr(_) => ValueKind::EtherAddr,
            Value::InetProto(_) => ValueKind::InetProto,
            Value::InetService(_) => ValueKind::InetService,
            Value::Ifname(_) => ValueKind::Ifname,
            Value::Mark(_) => ValueKind::Mark,
            Value::U32(_) => ValueKind::Integer,
            Value::Bytes(_) => return None,
        })
    }

    /// The value alone, in the kernel's byte layout (no padding).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        Ok(match self {
            Value::Ipv4Addr(a) => a.octets().to_vec(),
            Value::Ipv6Addr(a) => a.octets().to_vec(),
            Value::EtherAddr(a) => a.to_vec(),
            Value::InetProto(p) => vec![*p],
            Value::InetService(p) => p.to_be_bytes().to_vec(),
            Value::Ifname(name) => {
                if name.is_empty() || name.len() >= IFNAME_LEN || name.contains('\0') {
                    return Err(format!(
                        "interface name {name:?} must be 1 to {} bytes without NUL",
                        IFNAME_LEN - 1
                    ));
                }
                let mut b = name.as_bytes().to_vec();
                b.resize(IFNAME_LEN, 0);
                b
            }
            Value::Mark(m) | Value::U32(m) => m.to_ne_bytes().to_vec(),
            Value::Bytes(b) => b.clone(),
        })
    }
}

impl ValueKind {
    /// The value's length in bytes, when the type fixes it.
    pub fn byte_len(self) -> Option<usize> {
        match self {
            ValueKind::Ipv4Addr | ValueKind::Mark => Some(4),
            ValueKind::Ipv6Addr => Some(16),
            ValueKind::EtherAddr => Some(6),
            ValueKind::InetProto => Some(1),
            ValueKind::InetService => Some(2),
            ValueKind::Ifname => Some(IFNAME_LEN),
            ValueKind::Integer => None,
        }
    }

    /// nft's name for the type.
    pub fn nft_name(self) -> &'static str {
        match self {
            ValueKind::Ipv4Addr => "ipv4_addr",
            ValueKind::Ipv6Addr => "ipv6_addr",
            ValueKind::EtherAddr => "ether_addr",
            ValueKind::InetProto => "inet_proto",
            ValueKind::InetService => "inet_service",
            ValueKind::Ifname => "ifname",
            ValueKind::Mark => "mark",
            ValueKind::Integer => "integer",
        }
    }

    /// nft's numeric id for the type (`enum datatypes` in nftables), which
    /// the kernel stores as a set's key or data type.
    pub fn nft_type_id(self) -> u32 {
        match self {
            ValueKind::Integer => 4,
            ValueKind::Ipv4Addr => 7,
            ValueKind::Ipv6Addr => 8,
            ValueKind::EtherAddr => 9,
            ValueKind::InetProto => 12,
            ValueKind::InetService => 13,
            ValueKind::Mark => 19,
            ValueKind::Ifname => 41,
        }
    }

    /// The kind with nft type id `id`, if this module knows it.
    pub fn from_nft_type_id(id: u32) -> Option<ValueKind> {
        [
            ValueKind::Integer,
            ValueKind::Ipv4Addr,
            ValueKind::Ipv6Addr,
            ValueKind::EtherAddr,
            ValueKind::InetProto,
            ValueKind::InetService,
            ValueKind::Mark,
            ValueKind::Ifname,
        ]
        .into_iter()
        .find(|k| k.nft_type_id() == id)
    }

    /// Decodes one value of this kind from exactly its bytes (no padding).
    /// Bytes of an unexpected length come back as [`Value::Bytes`].
    pub fn decode(self, b: &[u8]) -> Value {
        let fixed = |n: usize| b.len() == n;
        match self {
            ValueKind::Ipv4Addr if fixed(4) => {
                Value::Ipv4Addr(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            ValueKind::Ipv6Addr if fixed(16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Value::Ipv6Addr(Ipv6Addr::from(a))
            }
            ValueKind::EtherAddr if fixed(6) => {
                let mut a = [0u8; 6];
                a.copy_from_slice(b);
                Value::EtherAddr(a)
            }
            ValueKind::InetProto if fixed(1) => Value::InetProto(b[0]),
            ValueKind::InetService if fixed(2) => {
                Value::InetService(u16::from_be_bytes([b[0], b[1]]))
            }
            ValueKind::Ifname if fixed(IFNAME_LEN) => {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                match std::str::from_utf8(&b[..end]) {
                    Ok(s) => Value::Ifname(s.to_string()),
                    Err(_) => Value::Bytes(b.to_vec()),
                }
            }
            ValueKind::Mark if fixed(4) => {
                Value::Mark(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            }
            ValueKind::Integer if fixed(4) => {
                Value::U32(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => Value::Bytes(b.to_vec()),
        }
    }
}

/// `bytes + 1` as a big-endian number; `None` if it overflows.
pub(crate) fn increment_be(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    for b in out.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            return Some(out);
        }
    }
    None
}

/// `bytes - 1` as a big-endian number; `None` if it underflows.
pub(crate) fn decrement_be(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    for b in out.iter_mut().rev() {
        let (v, borrow) = b.overflowing_sub(1);
        *b = v;
        if !borrow {
            return Some(out);
        }
    }
    None
}

/// Rounds `n` up to the next multiple of 4 (one nf_tables register).
pub(crate) fn reg_align(n: usize) -> usize {
    (n + 3) & !3
}

/// Encodes a key or map data: one value at its natural length, or a
/// concatenation with every component zero-padded to a multiple of 4 bytes.
pub fn encode_values(values: &[Value]) -> Result<Vec<u8>, String> {
    let out = match values {
        [] => return Err("a key or data value needs at least one component".into()),
        [one] => one.to_bytes()?,
        many => {
            let mut out = Vec::new();
            for v in many {
                out.extend_from_slice(&v.to_bytes()?);
                out.resize(reg_align(out.len()), 0);
            }
            out
        }
    };
    if out.len() > MAX_VALUE_LEN {
        return Err(format!(
            "{} bytes is longer than the kernel's limit of {MAX_VALUE_LEN}",
            out.len()
        ));
    }
    Ok(out)
}

/// Splits and decodes bytes laid out for `kinds` (see [`encode_values`]).
/// `field_lens` are the components' unpadded lengths, when the kernel told
/// them (sets with a concatenation description); otherwise the kinds' own
/// lengths are used. Returns `None` when the bytes do not fit the layout.
pub fn decode_values(
    kinds: &[ValueKind],
    field_lens: &[usize],
    bytes: &[u8],
) -> Option<Vec<Value>> {
    if let [kind] = kinds {
        return Some(vec![kind.decode(bytes)]);
    }
    let mut out = Vec::with_capacity(kinds.len());
    let mut at = 0;
    for (i, kind) in kinds.iter().enumerate() {
        let len = field_lens.get(i).copied().or_else(|| kind.byte_len())?;
        let field = bytes.get(at..at + len)?;
        out.push(kind.decode(field));
        at += reg_align(len);
    }
    (at == bytes.len()).then_some(out)
}

fn proto_name(p: u8) -> Option<&'static str> {
    Some(match p {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "ipv6-icmp",
        132 => "sctp",
        _ => return None,
    })
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Ipv4Addr(a) => write!(f, "{a}"),
            Value::Ipv6Addr(a) => write!(f, "{a}"),
            Value::EtherAddr(a) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                a[0], a[1], a[2], a[3], a[4], a[5]
            ),
            Value::InetProto(p) => match proto_name(*p) {
                Some(name) => f.write_str(name),
                None => write!(f, "{p}"),
            },
            Value::InetService(p) => write!(f, "{p}"),
            Value::Ifname(n) => write!(f, "{n:?}"),
            Value::Mark(m) => write!(f, "0x{m:08x}"),
            Value::U32(n) => write!(f, "{n}"),
            Value::Bytes(b) => {
                f.write_str("0x")?;
                b.iter().try_for_each(|c| write!(f, "{c:02x}"))
            }
        }
    }
}

pub(crate) struct Concat<'a>(pub &'a [Value]);

impl fmt::Display for Concat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" . ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl From<Ipv4Addr> for Value {
    fn from(a: Ipv4Addr) -> Self {
        Value::Ipv4Addr(a)
    }
}

impl From<Ipv6Addr> for Value {
    fn from(a: Ipv6Addr) -> Self {
        Value::Ipv6Addr(a)
    }
}

impl From<std::net::IpAddr> for Value {
    fn from(a: std::net::IpAddr) -> Self {
        match a {
            std::net::IpAddr::V4(a) => Value::Ipv4Addr(a),
            std::net::IpAddr::V6(a) => Value::Ipv6Addr(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values_keep_their_natural_length() {
        assert_eq!(
            encode_values(&[Value::InetService(8080)]).unwrap(),
            vec![0x1f, 0x90]
        );
        assert_eq!(encode_values(&[Value::InetProto(6)]).unwrap(), vec![6]);
        let ifname = encode_values(&[Value::Ifname("eth0".into())]).unwrap();
        assert_eq!(ifname.len(), 16);
        assert_eq!(&ifname[..5], b"eth0\0");
    }

    #[test]
    fn concatenation_pads_each_component_to_four_bytes() {
        let key = [
            Value::Ipv4Addr(Ipv4Addr::new(10, 0, 0, 5)),
            Value::InetProto(17),
            Value::InetService(53),
            Value::EtherAddr([1, 2, 3, 4, 5, 6]),
        ];
        let b = encode_values(&key).unwrap();
        assert_eq!(
            b,
            vec![10, 0, 0, 5, 17, 0, 0, 0, 0, 53, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0]
        );
        let kinds: Vec<_> = key.iter().map(|v| v.kind().unwrap()).collect();
        assert_eq!(decode_values(&kinds, &[], &b).unwrap(), key.to_vec());
        assert_eq!(decode_values(&kinds, &[], &b[..16]), None);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let err = encode_values(&[Value::Ifname("a-very-long-ifname".into())]).unwrap_err();
        assert!(err.contains("1 to 15 bytes"), "{err}");
        assert!(encode_values(&[]).is_err());
        assert!(encode_values(&[Value::Bytes(vec![0; 65])]).is_err());
    }

    #[test]
    fn type_ids_round_trip() {
        for id in 0..64 {
            if let Some(k) = ValueKind::from_nft_type_id(id) {
                assert_eq!(k.nft_type_id(), id);
            }
        }
        assert_eq!(ValueKind::from_nft_type_id(7), Some(ValueKind::Ipv4Addr));
    }
}
