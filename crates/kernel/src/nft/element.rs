//! Set and map elements: keys, ranges of keys, and map data.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::NftError;
use super::value::{encode_values, Concat, Value};

/// A verdict stored as the data of a verdict map element.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `accept`
    Accept,
    /// `drop`
    Drop,
    /// `continue`
    Continue,
    /// `return`
    Return,
    /// `jump CHAIN`
    Jump(String),
    /// `goto CHAIN`
    Goto(String),
}

/// What a map element maps its key to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ElementData {
    /// A value or concatenation (e.g. `ipv4_addr . inet_service` for DNAT).
    Values(Vec<Value>),
    /// A verdict (verdict maps).
    Verdict(Verdict),
}

/// One element of a set or map: a key (one value, or several for a
/// concatenation) or a range of keys, and, in a map, its data.
///
/// In an interval set (`flags interval`) of single values, give every
/// element as a range: a plain key there would reach up to the next range.
/// Write one value `v` as `Element::range(v, v)`, as nft does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Element {
    /// The key's components; one for a plain key, more for a concatenation.
    /// For a range, its first key.
    pub key: Vec<Value>,
    /// For a range (sets with `flags interval`), its last key, inclusive.
    pub key_end: Option<Vec<Value>>,
    /// The data, for map elements; `None` for set elements.
    pub data: Option<ElementData>,
}

impl Element {
    /// A set element with a single-value key.
    pub fn new(key: Value) -> Self {
        Element::concat([key])
    }

    /// A set element whose key is a concatenation (`a . b . c`).
    pub fn concat(key: impl IntoIterator<Item = Value>) -> Self {
        Element {
            key: key.into_iter().collect(),
            key_end: None,
            data: None,
        }
    }

    /// A range `first-last` (both included), for an interval set.
    pub fn range(first: Value, last: Value) -> Self {
        Element::concat_range([first], [last])
    }

    /// A range of concatenations, for an interval set with a concatenated
    /// key: each component from its `first` to its `last` value, e.g.
    /// `10.0.0.0-10.0.0.255 . 80-80`.
    pub fn concat_range(
        first: impl IntoIterator<Item = Value>,
        last: impl IntoIterator<Item = Value>,
    ) -> Self {
        Element {
            key: first.into_iter().collect(),
            key_end: Some(last.into_iter().collect()),
            data: None,
        }
    }

    /// The range of addresses in `addr/len` (host bits of `addr` ignored),
    /// for an interval set of `ipv4_addr` or `ipv6_addr`.
    pub fn prefix(addr: std::net::IpAddr, len: u8) -> Self {
        let (first, last) = prefix_bounds(addr, len);
        Element::range(first, last)
    }

    /// This element with map data: one value or a concatenation.
    pub fn with_data(mut self, data: impl IntoIterator<Item = Value>) -> Self {
        self.data = Some(ElementData::Values(data.into_iter().collect()));
        self
    }

    /// This element with verdict data (for verdict maps).
    pub fn with_verdict(mut self, verdict: Verdict) -> Self {
        self.data = Some(ElementData::Verdict(verdict));
        self
    }

    /// The key in the kernel's byte layout.
    pub fn key_bytes(&self) -> Result<Vec<u8>, NftError> {
        encode_values(&self.key).map_err(|reason| self.invalid(reason))
    }

    /// The last key of a range in the kernel's byte layout, checked
    /// against the first.
    pub fn key_end_bytes(&self) -> Result<Option<Vec<u8>>, NftError> {
        let Some(end) = &self.key_end else {
            return Ok(None);
        };
        let kinds = |vs: &[Value]| vs.iter().map(Value::kind).collect::<Vec<_>>();
        if kinds(end) != kinds(&self.key) {
            return Err(
                self.invalid("a range's first and last keys must have the same types".into())
            );
        }
        if let Some(v) = self
            .key
            .iter()
            .find(|v| matches!(v, Value::Mark(_) | Value::U32(_)))
        {
            return Err(self.invalid(format!(
                "ranges of host-byte-order values ({v}) are not supported"
            )));
        }
        let first = self.key_bytes()?;
        let last = encode_values(end).map_err(|reason| self.invalid(reason))?;
        let ordered = self
            .key
            .iter()
            .zip(end)
            .all(|(a, b)| a.to_bytes().ok() <= b.to_bytes().ok());
        if !ordered || first.len() != last.len() {
            return Err(self.invalid("a range's first key must not be above its last".into()));
        }
        Ok(Some(last))
    }

    pub(crate) fn invalid(&self, reason: String) -> NftError {
        NftError::InvalidValue {
            what: format!("element {self}"),
            reason,
        }
    }
}

/// First and last address of `addr/len`.
fn prefix_bounds(addr: std::net::IpAddr, len: u8) -> (Value, Value) {
    match addr {
        std::net::IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            let first = u32::from(a) & !host;
            (
                Ipv4Addr::from(first).into(),
                Ipv4Addr::from(first | host).into(),
            )
        }
        std::net::IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            let first = u128::from(a) & !host;
            (
                Ipv6Addr::from(first).into(),
                Ipv6Addr::from(first | host).into(),
            )
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Continue => f.write_str("continue"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

impl fmt::Display for ElementData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementData::Values(v) => write!(f, "{}", Concat(v)),
            ElementData::Verdict(v) => write!(f, "{v}"),
        }
    }
}

/// Formats like nft: `10.0.0.5 . 8080 : 172.17.0.2 . 80`.
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key_end {
            None => write!(f, "{}", Concat(&self.key))?,
            Some(end) => {
                for (i, (a, b)) in self.key.iter().zip(end).enumerate() {
                    if i > 0 {
                        f.write_str(" . ")?;
                    }
                    if a == b {
                        write!(f, "{a}")?;
                    } else {
                        write!(f, "{a}-{b}")?;
                    }
                }
            }
        }
        if let Some(data) = &self.data {
            write!(f, " : {data}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::value::{decrement_be, increment_be};

    #[test]
    fn display_is_nft_like() {
        let e = Element::concat([
            Value::Ipv4Addr(Ipv4Addr::new(10, 0, 0, 5)),
            Value::InetService(8080),
        ])
        .with_data([
            Value::Ipv4Addr(Ipv4Addr::new(172, 17, 0, 2)),
            Value::InetService(80),
        ]);
        assert_eq!(e.to_string(), "10.0.0.5 . 8080 : 172.17.0.2 . 80");
        let v = Element::new(Value::InetProto(6)).with_verdict(Verdict::Jump("web".into()));
        assert_eq!(v.to_string(), "tcp : jump web");
    }

    #[test]
    fn prefixes_become_inclusive_ranges() {
        let e = Element::prefix("10.1.2.3".parse().unwrap(), 24);
        assert_eq!(e.to_string(), "10.1.2.0-10.1.2.255");
        assert_eq!(
            Element::prefix("fd00::1".parse().unwrap(), 128).to_string(),
            "fd00::1"
        );
        assert_eq!(
            Element::prefix("1.2.3.4".parse().unwrap(), 0).to_string(),
            "0.0.0.0-255.255.255.255"
        );
        assert_eq!(e.key_end_bytes().unwrap(), Some(vec![10, 1, 2, 255]));
        let backwards = Element::range(Value::InetService(90), Value::InetService(80));
        assert!(backwards.key_end_bytes().is_err());
        assert!(Element::range(Value::Mark(1), Value::Mark(2))
            .key_end_bytes()
            .is_err());
        assert_eq!(increment_be(&[0, 255]), Some(vec![1, 0]));
        assert_eq!(increment_be(&[255, 255]), None);
        assert_eq!(decrement_be(&[1, 0]), Some(vec![0, 255]));
        assert_eq!(decrement_be(&[0, 0]), None);
    }
}
