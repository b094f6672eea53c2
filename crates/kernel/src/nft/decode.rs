//! Decoding the kernel's answers: elements, sets and tables.

use super::element::{Element, ElementData, Verdict};
use super::msg::*;
use super::value::{decode_values, decrement_be, encode_values, Value, ValueKind};
use super::{Family, SetRef, TableRef};

/// The data of an element as the kernel stores it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RawData {
    /// Value bytes (kernel layout, concatenation padding included).
    Value(Vec<u8>),
    /// A verdict.
    Verdict(Verdict),
}

/// An element as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawElement {
    /// Key bytes (kernel layout, concatenation padding included).
    pub key: Vec<u8>,
    /// Last key of a range in a concatenated interval set.
    pub key_end: Option<Vec<u8>>,
    /// Map data.
    pub data: Option<RawData>,
    /// `NFTA_SET_ELEM_FLAGS` (1 = interval end, 2 = catch-all).
    pub flags: u32,
}

/// A set's or map's shape, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetInfo {
    /// The set.
    pub set: SetRef,
    /// `NFT_SET_*` flags (0x4 interval, 0x8 map, 0x80 concatenation, ...).
    pub flags: u32,
    /// nft's key type id (concatenations pack 6 bits per component).
    pub key_type: Option<u32>,
    /// Key length in bytes.
    pub key_len: usize,
    /// nft's data type id for maps (`0xffffff00` for verdict maps).
    pub data_type: Option<u32>,
    /// Data length in bytes, for maps.
    pub data_len: usize,
    /// Unpadded component lengths of a concatenated key, when the set
    /// carries a concatenation description.
    pub field_lens: Vec<usize>,
}

impl SetInfo {
    /// Whether it is a map.
    pub fn is_map(&self) -> bool {
        self.flags & NFT_SET_MAP != 0
    }

    /// Whether it is a verdict map.
    pub fn is_verdict_map(&self) -> bool {
        self.is_map() && self.data_type == Some(NFT_DATA_VERDICT)
    }

    /// Whether it holds intervals.
    pub fn is_interval(&self) -> bool {
        self.flags & NFT_SET_INTERVAL != 0
    }

    /// Whether its key is a concatenation.
    pub fn is_concat(&self) -> bool {
        self.flags & NFT_SET_CONCAT != 0 || self.key_kinds().is_some_and(|k| k.len() > 1)
    }

    /// The key's component kinds, if every one is known to this module.
    pub fn key_kinds(&self) -> Option<Vec<ValueKind>> {
        kinds_of(self.key_type?)
    }

    /// The data's component kinds (value maps), if every one is known.
    pub fn data_kinds(&self) -> Option<Vec<ValueKind>> {
        match self.data_type? {
            NFT_DATA_VERDICT => None,
            t => kinds_of(t),
        }
    }

    /// The key type as nft writes it, e.g. `ipv4_addr . inet_service`.
    pub fn key_type_name(&self) -> String {
        type_name(self.key_type, self.key_len)
    }

    /// The data type as nft writes it (`verdict` for verdict maps).
    pub fn data_type_name(&self) -> String {
        match self.data_type {
            Some(NFT_DATA_VERDICT) => "verdict".into(),
            t => type_name(t, self.data_len),
        }
    }

    /// Decodes a raw element into typed values. Components of unknown types
    /// come back as [`Value::Bytes`]. Use [`SetInfo::decode_all`] for whole
    /// interval sets, whose ranges may span two kernel elements.
    pub fn decode(&self, raw: &RawElement) -> Element {
        self.decode_range(raw, raw.key_end.as_deref())
    }

    /// Decodes a set's elements. In an interval set of single values the
    /// kernel keeps a range as a start element and an end element one past
    /// its last value; these come back joined as one range element (and an
    /// end element with no start, the lower bound nft adds, is dropped).
    pub fn decode_all(&self, raw: &[RawElement]) -> Vec<Element> {
        if !self.is_interval() || raw.iter().any(|r| r.key_end.is_some()) {
            return raw.iter().map(|r| self.decode(r)).collect();
        }
        let is_end = |r: &RawElement| r.flags & NFT_SET_ELEM_INTERVAL_END != 0;
        let mut sorted: Vec<&RawElement> = raw.iter().collect();
        // By key; at equal keys an end sorts first, since it closes the
        // range below while the start opens the next one.
        sorted.sort_by(|a, b| a.key.cmp(&b.key).then(is_end(b).cmp(&is_end(a))));
        let mut out = Vec::new();
        let mut rest = sorted.into_iter().peekable();
        while let Some(start) = rest.next() {
            if is_end(start) {
                continue;
            }
            let last = match rest.next_if(|r| is_end(r)) {
                Some(end) => decrement_be(&end.key).unwrap_or_default(),
                None => vec![0xff; start.key.len()],
            };
            out.push(self.decode_range(start, Some(&last)));
        }
        out
    }

    fn decode_range(&self, raw: &RawElement, last: Option<&[u8]>) -> Element {
        let key = decode_or_bytes(self.key_kinds(), &self.field_lens, &raw.key);
        let key_end = last.map(|b| decode_or_bytes(self.key_kinds(), &self.field_lens, b));
        let data = raw.data.as_ref().map(|d| match d {
            RawData::Verdict(v) => ElementData::Verdict(v.clone()),
            RawData::Value(b) => ElementData::Values(decode_or_bytes(self.data_kinds(), &[], b)),
        });
        Element { key, key_end, data }
    }
}

fn decode_or_bytes(kinds: Option<Vec<ValueKind>>, lens: &[usize], b: &[u8]) -> Vec<Value> {
    kinds
        .and_then(|k| decode_values(&k, lens, b))
        .unwrap_or_else(|| vec![Value::Bytes(b.to_vec())])
}

/// Splits nft's (possibly concatenated) type id into component kinds.
fn kinds_of(mut id: u32) -> Option<Vec<ValueKind>> {
    let mut kinds = Vec::new();
    while id != 0 {
        kinds.push(ValueKind::from_nft_type_id(
            id & ((1 << NFT_TYPE_BITS) - 1),
        )?);
        id >>= NFT_TYPE_BITS;
    }
    kinds.reverse();
    (!kinds.is_empty()).then_some(kinds)
}

fn type_name(id: Option<u32>, len: usize) -> String {
    match id.and_then(kinds_of) {
        Some(k) => k
            .iter()
            .map(|k| k.nft_name())
            .collect::<Vec<_>>()
            .join(" . "),
        None => format!("{len}-byte value"),
    }
}

/// Decodes the elements of one `NFT_MSG_NEWSETELEM` dump message.
pub(crate) fn decode_elements(msg: &NlMsg<'_>, out: &mut Vec<RawElement>) -> Result<(), String> {
    if msg.ty != nft_msg_type(NFT_MSG_NEWSETELEM) {
        return Ok(());
    }
    let (_, attrs) = msg
        .nfgen()
        .ok_or("element message without nfgenmsg header")?;
    for (ty, list) in attrs {
        if ty != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for (ty, elem) in Attrs(list) {
            if ty == NFTA_LIST_ELEM {
                out.push(decode_element(elem)?);
            }
        }
    }
    Ok(())
}

fn decode_element(elem: &[u8]) -> Result<RawElement, String> {
    let mut out = RawElement {
        key: Vec::new(),
        key_end: None,
        data: None,
        flags: 0,
    };
    for (ty, data) in Attrs(elem) {
        match ty {
            NFTA_SET_ELEM_KEY => out.key = nested_value(data).ok_or("element key without value")?,
            NFTA_SET_ELEM_KEY_END => {
                out.key_end = Some(nested_value(data).ok_or("element key end without value")?)
            }
            NFTA_SET_ELEM_FLAGS => out.flags = attr_be32(data).ok_or("bad element flags")?,
            NFTA_SET_ELEM_DATA => {
                for (ty, d) in Attrs(data) {
                    match ty {
                        NFTA_DATA_VALUE => out.data = Some(RawData::Value(d.to_vec())),
                        NFTA_DATA_VERDICT => out.data = Some(RawData::Verdict(decode_verdict(d)?)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn nested_value(data: &[u8]) -> Option<Vec<u8>> {
    Attrs(data)
        .find(|(ty, _)| *ty == NFTA_DATA_VALUE)
        .map(|(_, v)| v.to_vec())
}

fn decode_verdict(data: &[u8]) -> Result<Verdict, String> {
    let mut code = None;
    let mut chain = None;
    for (ty, d) in Attrs(data) {
        match ty {
            NFTA_VERDICT_CODE => code = attr_be32(d).map(|c| c as i32),
            NFTA_VERDICT_CHAIN => chain = Some(attr_string(d)),
            _ => {}
        }
    }
    Ok(match (code.ok_or("verdict without code")?, chain) {
        (NF_ACCEPT, _) => Verdict::Accept,
        (NF_DROP, _) => Verdict::Drop,
        (NFT_CONTINUE, _) => Verdict::Continue,
        (NFT_RETURN, _) => Verdict::Return,
        (NFT_JUMP, Some(c)) => Verdict::Jump(c),
        (NFT_GOTO, Some(c)) => Verdict::Goto(c),
        (c, _) => return Err(format!("verdict code {c} is not supported")),
    })
}

/// Decodes an `NFT_MSG_NEWSET` answer.
pub(crate) fn decode_set(msg: &NlMsg<'_>) -> Result<SetInfo, String> {
    if msg.ty != nft_msg_type(NFT_MSG_NEWSET) {
        return Err(format!(
            "message type {:#x} where a set was expected",
            msg.ty
        ));
    }
    let (family, attrs) = msg.nfgen().ok_or("set message without nfgenmsg header")?;
    let family = Family::from_nfproto(family).ok_or_else(|| format!("unknown family {family}"))?;
    let mut info = SetInfo {
        set: SetRef::new(family, "", ""),
        flags: 0,
        key_type: None,
        key_len: 0,
        data_type: None,
        data_len: 0,
        field_lens: Vec::new(),
    };
    let be32 = |d: &[u8]| attr_be32(d).ok_or_else(|| "bad 32-bit set attribute".to_string());
    for (ty, d) in attrs {
        match ty {
            NFTA_SET_TABLE => info.set.table = attr_string(d),
            NFTA_SET_NAME => info.set.set = attr_string(d),
            NFTA_SET_FLAGS => info.flags = be32(d)?,
            NFTA_SET_KEY_TYPE => info.key_type = Some(be32(d)?),
            NFTA_SET_KEY_LEN => info.key_len = be32(d)? as usize,
            NFTA_SET_DATA_TYPE => info.data_type = Some(be32(d)?),
            NFTA_SET_DATA_LEN => info.data_len = be32(d)? as usize,
            NFTA_SET_DESC => {
                for (ty, concat) in Attrs(d) {
                    if ty != NFTA_SET_DESC_CONCAT {
                        continue;
                    }
                    for (_, field) in Attrs(concat) {
                        for (ty, len) in Attrs(field) {
                            if ty == NFTA_SET_FIELD_LEN {
                                info.field_lens.push(be32(len)? as usize);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Decodes an `NFT_MSG_NEWTABLE` answer.
pub(crate) fn decode_table(msg: &NlMsg<'_>) -> Result<Option<TableRef>, String> {
    if msg.ty != nft_msg_type(NFT_MSG_NEWTABLE) {
        return Ok(None);
    }
    let (family, attrs) = msg.nfgen().ok_or("table message without nfgenmsg header")?;
    let Some(family) = Family::from_nfproto(family) else {
        return Ok(None);
    };
    let name = attrs
        .clone()
        .find(|(ty, _)| *ty == NFTA_TABLE_NAME)
        .map(|(_, d)| attr_string(d))
        .ok_or("table without name")?;
    Ok(Some(TableRef::new(family, name)))
}

/// Why an element of `info`'s shape cannot be `e`, if the shapes differ.
pub(crate) fn shape_mismatch(info: &SetInfo, e: &Element) -> Option<String> {
    let key = encode_values(&e.key).ok()?;
    if key.len() != info.key_len {
        return Some(format!(
            "the key is {} bytes but the set's key ({}) is {} bytes",
            key.len(),
            info.key_type_name(),
            info.key_len
        ));
    }
    match (&e.data, info.is_map()) {
        (None, true) => Some(format!(
            "the set is a map ({} : {}); the element needs data",
            info.key_type_name(),
            info.data_type_name()
        )),
        (Some(_), false) => Some("the set is not a map; the element must not have data".into()),
        (Some(ElementData::Verdict(_)), true) if !info.is_verdict_map() => Some(format!(
            "the map's data is {}, not a verdict",
            info.data_type_name()
        )),
        (Some(ElementData::Values(_)), true) if info.is_verdict_map() => {
            Some("the map's data is a verdict".into())
        }
        (Some(ElementData::Values(v)), true) => {
            let len = encode_values(v).ok()?.len();
            (len != info.data_len).then(|| {
                format!(
                    "the data is {len} bytes but the map's data ({}) is {} bytes",
                    info.data_type_name(),
                    info.data_len
                )
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_type_ids_split_into_kinds() {
        assert_eq!(kinds_of(7), Some(vec![ValueKind::Ipv4Addr]));
        assert_eq!(
            kinds_of((7 << 6) | 13),
            Some(vec![ValueKind::Ipv4Addr, ValueKind::InetService])
        );
        assert_eq!(kinds_of(63), None);
    }
}
