//! Encoding batches and requests as nf_tables netlink messages.

use std::collections::HashMap;

use super::element::{Element, ElementData, Verdict};
use super::error::NftError;
use super::expr::put_verdict;
use super::msg::*;
use super::rules::TableDef;
use super::value::{encode_values, increment_be};
use super::{BatchOp, ElementOp, SetRef, TableRef};

/// Where an element (or a rule's expression) sits in a sent message, to
/// map the kernel's extended ack (an attribute offset) back to it.
pub(crate) struct ElementSpan {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) index: usize,
}

/// Which part of a [`TableDef`] a message adds; indexes are into the
/// definition's sets, chains and rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TablePart {
    Table,
    Chain(usize),
    Set(usize),
    Elements(usize),
    Rule(usize),
}

/// One message of an encoded batch.
pub(crate) struct SentMsg {
    pub(crate) seq: u32,
    /// Index of the batch operation it carries.
    pub(crate) op: usize,
    /// For an [`BatchOp::AddTable`], the part of the table.
    pub(crate) part: Option<TablePart>,
    /// Elements of an element message, expressions of a rule message.
    pub(crate) elements: Vec<ElementSpan>,
}

/// A batch ready to send.
pub(crate) struct EncodedBatch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) begin_seq: u32,
    pub(crate) end_seq: u32,
    pub(crate) msgs: Vec<SentMsg>,
}

/// Elements per message are limited by the 16-bit length of the element
/// list attribute; leave room for the message's other attributes.
const MAX_ELEMENT_LIST: usize = MAX_ATTR_LEN - 1024;

/// Encodes `ops` as one nfnetlink batch, numbering messages from `seq`.
/// Only the last message asks for an ack; the kernel still reports every
/// failing message.
pub(crate) fn encode_batch(ops: &[BatchOp], seq: u32) -> Result<EncodedBatch, NftError> {
    let mut w = MsgWriter::default();
    let mut msgs = Vec::new();
    let mut next = seq;
    let begin = w.begin_msg(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        next,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_msg(begin);
    // Ids of the sets the batch adds, unique within it, as nft numbers them.
    let mut set_ids = 0;
    for (i, op) in ops.iter().enumerate() {
        match op {
            BatchOp::Elements {
                op: eop,
                set,
                elements,
            } => encode_elements(&mut w, &mut msgs, &mut next, i, *eop, set, None, elements)?,
            BatchOp::AddTable(def) => {
                encode_table(&mut w, &mut msgs, &mut next, &mut set_ids, i, def)?
            }
            BatchOp::Flush { set } => {
                next += 1;
                let start = w.begin_msg(
                    nft_msg_type(NFT_MSG_DELSETELEM),
                    NLM_F_REQUEST,
                    next,
                    set.family.nfproto(),
                    0,
                );
                put_set_names(&mut w, set)?;
                w.end_msg(start);
                msgs.push(SentMsg {
                    seq: next,
                    op: i,
                    part: None,
                    elements: Vec::new(),
                });
            }
            BatchOp::DeleteTable { table } => {
                check_netloom_table(table)?;
                next += 1;
                let start = w.begin_msg(
                    nft_msg_type(NFT_MSG_DELTABLE),
                    NLM_F_REQUEST,
                    next,
                    table.family.nfproto(),
                    0,
                );
                w.attr_str(
                    NFTA_TABLE_NAME,
                    checked_name(&table.name, "table", &table.to_string())?,
                );
                w.end_msg(start);
                msgs.push(SentMsg {
                    seq: next,
                    op: i,
                    part: None,
                    elements: Vec::new(),
                });
            }
        }
    }
    // Ask for an ack on the last message: its answer ends the batch's replies.
    if let Some(last) = msgs.last() {
        let at = find_msg(&w.buf, last.seq).expect("encoded message is present");
        let flags = u16::from_ne_bytes([w.buf[at + 6], w.buf[at + 7]]) | NLM_F_ACK;
        w.buf[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
    }
    next += 1;
    let end = w.begin_msg(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        next,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_msg(end);
    Ok(EncodedBatch {
        bytes: w.buf,
        begin_seq: seq,
        end_seq: next,
        msgs,
    })
}

fn find_msg(buf: &[u8], seq: u32) -> Option<usize> {
    let mut at = 0;
    while at + NLMSG_HDR_LEN <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().ok()?) as usize;
        if u32::from_ne_bytes(buf[at + 8..at + 12].try_into().ok()?) == seq {
            return Some(at);
        }
        at += (len + 3) & !3;
    }
    None
}

pub(crate) fn check_netloom_table(table: &TableRef) -> Result<(), NftError> {
    if table.is_netloom() {
        return Ok(());
    }
    Err(NftError::Refused {
        object: table.to_string(),
        reason: format!(
            "not a netloom table (its name does not start with {:?}); netloom never touches other tables",
            super::TABLE_PREFIX
        ),
    })
}

/// nf_tables names are at most 255 bytes and have no NUL.
fn checked_name<'a>(name: &'a str, what: &str, object: &str) -> Result<&'a str, NftError> {
    if name.is_empty() || name.len() > 255 || name.contains('\0') {
        return Err(NftError::InvalidValue {
            what: object.to_string(),
            reason: format!("{what} name must be 1 to 255 bytes without NUL"),
        });
    }
    Ok(name)
}

fn put_set_names(w: &mut MsgWriter, set: &SetRef) -> Result<(), NftError> {
    let object = set.to_string();
    w.attr_str(
        NFTA_SET_ELEM_LIST_TABLE,
        checked_name(&set.table, "table", &object)?,
    );
    w.attr_str(
        NFTA_SET_ELEM_LIST_SET,
        checked_name(&set.set, "set", &object)?,
    );
    Ok(())
}

/// Element messages; `set_id` is the batch's id of a set the same batch
/// adds (nft sends it along with the name).
#[allow(clippy::too_many_arguments)]
fn encode_elements(
    w: &mut MsgWriter,
    msgs: &mut Vec<SentMsg>,
    next: &mut u32,
    op_index: usize,
    op: ElementOp,
    set: &SetRef,
    set_id: Option<u32>,
    elements: &[Element],
) -> Result<(), NftError> {
    let (ty, flags) = match op {
        ElementOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE),
        ElementOp::Create => (
            NFT_MSG_NEWSETELEM,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
        ),
        ElementOp::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST),
        ElementOp::Destroy => (NFT_MSG_DESTROYSETELEM, NLM_F_REQUEST),
    };
    if elements.is_empty() {
        return Err(NftError::InvalidValue {
            what: set.to_string(),
            reason: format!(
                "{} elements: no elements given (an empty list would flush the set)",
                op.verb()
            ),
        });
    }
    let with_data = matches!(op, ElementOp::Add | ElementOp::Create);
    let encoded: Vec<Vec<u8>> = elements
        .iter()
        .map(|e| encode_element(e, with_data))
        .collect::<Result<_, _>>()?;
    let mut rest = encoded.iter().enumerate().peekable();
    while rest.peek().is_some() {
        *next += 1;
        let start = w.begin_msg(nft_msg_type(ty), flags, *next, set.family.nfproto(), 0);
        put_set_names(w, set)?;
        if let Some(id) = set_id {
            w.attr_be32(NFTA_SET_ELEM_LIST_SET_ID, id);
        }
        let list = w.begin_nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        let mut spans = Vec::new();
        while let Some((index, bytes)) = rest.peek() {
            if !spans.is_empty() && w.len() - list + bytes.len() > MAX_ELEMENT_LIST {
                break;
            }
            let at = (w.len() - start) as u32;
            w.buf.extend_from_slice(bytes);
            spans.push(ElementSpan {
                start: at,
                end: (w.len() - start) as u32,
                index: *index,
            });
            rest.next();
        }
        if !w.end_nest(list) {
            return Err(NftError::InvalidValue {
                what: set.to_string(),
                reason: "an element is too large for one netlink attribute".into(),
            });
        }
        w.end_msg(start);
        msgs.push(SentMsg {
            seq: *next,
            op: op_index,
            part: None,
            elements: spans,
        });
    }
    Ok(())
}

/// One `NFTA_LIST_ELEM` attribute for `e`.
///
/// A range of a concatenation carries its last key as `NFTA_SET_ELEM_KEY_END`
/// (the kernel keeps such sets in its `pipapo` backend). A range of single
/// values becomes two kernel elements, as nft sends them for the `rbtree`
/// backend: the first key, and the key one past the last flagged as an
/// interval end (left out when the range runs to the highest value).
fn encode_element(e: &Element, with_data: bool) -> Result<Vec<u8>, NftError> {
    let key = e.key_bytes()?;
    let key_end = e.key_end_bytes()?;
    let concat = e.key.len() > 1;
    let mut w = MsgWriter::default();
    let elem = w.begin_nest(NFTA_LIST_ELEM);
    put_value(&mut w, NFTA_SET_ELEM_KEY, &key);
    if let (Some(end), true) = (&key_end, concat) {
        put_value(&mut w, NFTA_SET_ELEM_KEY_END, end);
    }
    if let (true, Some(data)) = (with_data, &e.data) {
        let d = w.begin_nest(NFTA_SET_ELEM_DATA);
        match data {
            ElementData::Values(v) => w.attr(
                NFTA_DATA_VALUE,
                &encode_values(v).map_err(|r| e.invalid(r))?,
            ),
            ElementData::Verdict(v) => {
                if let Verdict::Jump(chain) | Verdict::Goto(chain) = v {
                    checked_name(chain, "chain", &format!("element {e}"))?;
                }
                put_verdict(&mut w, v);
            }
        }
        w.end_nest(d);
    }
    w.end_nest(elem);
    if let (Some(end), false) = (&key_end, concat) {
        if let Some(past) = increment_be(end) {
            let elem = w.begin_nest(NFTA_LIST_ELEM);
            put_value(&mut w, NFTA_SET_ELEM_KEY, &past);
            w.attr_be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
            w.end_nest(elem);
        }
    }
    Ok(w.buf)
}

/// Starts a message for one part of a table definition and records it.
#[allow(clippy::too_many_arguments)]
fn begin_part(
    w: &mut MsgWriter,
    msgs: &mut Vec<SentMsg>,
    next: &mut u32,
    ty: u16,
    flags: u16,
    family: u8,
    op_index: usize,
    part: TablePart,
) -> usize {
    *next += 1;
    msgs.push(SentMsg {
        seq: *next,
        op: op_index,
        part: Some(part),
        elements: Vec::new(),
    });
    w.begin_msg(nft_msg_type(ty), flags, *next, family, 0)
}

/// Checks a table definition before anything is encoded: names, set
/// types, and the rules' expressions. Errors name the part.
fn check_table(def: &TableDef) -> Result<(), NftError> {
    let table = &def.table;
    check_netloom_table(table)?;
    checked_name(&table.name, "table", &table.to_string())?;
    for set in &def.sets {
        let sref = SetRef::new(table.family, &table.name, &set.name);
        let object = sref.to_string();
        checked_name(&set.name, "set", &object)?;
        let invalid = |reason: String| NftError::InvalidValue {
            what: object.clone(),
            reason,
        };
        set.key_shape().map_err(invalid)?;
        set.data_shape().map_err(invalid)?;
        if def.sets.iter().filter(|s| s.name == set.name).count() > 1 {
            return Err(invalid("defined twice in the table".into()));
        }
        for e in &set.elements {
            check_element_types(set, e).map_err(|reason| e.invalid(reason))?;
        }
    }
    for chain in &def.chains {
        checked_name(&chain.name, "chain", &chain_object(table, &chain.name))?;
    }
    for (i, rule) in def.rules.iter().enumerate() {
        let object = chain_object(table, rule.chain());
        checked_name(rule.chain(), "chain", &object)?;
        let invalid = |reason: String| NftError::InvalidValue {
            what: format!("{object}: rule {}", i + 1),
            reason,
        };
        if let Some(why) = rule.invalid() {
            return Err(invalid(why.to_string()));
        }
        if rule.exprs().is_empty() {
            return Err(invalid("a rule needs at least one expression".into()));
        }
        for e in rule.exprs() {
            e.check()
                .map_err(|why| invalid(format!("[ {e} ]: {why}")))?;
            if let super::Expr::Verdict(Verdict::Jump(c) | Verdict::Goto(c)) = e {
                checked_name(c, "chain", &object)?;
            }
        }
    }
    Ok(())
}

/// Whether an initial element's values have the set's types.
fn check_element_types(set: &super::SetDef, e: &Element) -> Result<(), String> {
    let same = |values: &[super::Value], kinds: &[super::ValueKind]| {
        values.len() == kinds.len()
            && values
                .iter()
                .zip(kinds)
                .all(|(v, k)| v.kind().is_none_or(|vk| vk == *k))
    };
    let names = |kinds: &[super::ValueKind]| {
        kinds
            .iter()
            .map(|k| k.nft_name())
            .collect::<Vec<_>>()
            .join(" . ")
    };
    if !same(&e.key, &set.key) || e.key_end.as_deref().is_some_and(|k| !same(k, &set.key)) {
        return Err(format!("the set's key is {}", names(&set.key)));
    }
    match (&e.data, &set.data) {
        (None, None) => Ok(()),
        (None, Some(d)) => Err(format!("the map's elements need data ({})", names(d))),
        (Some(_), None) => Err("the set is not a map; the element must not have data".into()),
        (Some(ElementData::Values(v)), Some(d)) if same(v, d) => Ok(()),
        (Some(_), Some(d)) => Err(format!("the map's data is {}", names(d))),
    }
}

/// `nft chain inet netloom-lab/prerouting`, in the style of [`SetRef`].
pub(crate) fn chain_object(table: &TableRef, chain: &str) -> String {
    format!("nft chain {} {}/{chain}", table.family, table.name)
}

/// The messages of a [`BatchOp::AddTable`], in the order nft sends them
/// for a `table` block: the table, its chains, each set followed by its
/// elements, then the rules. The attributes and flags are nft's too:
/// the table without `NLM_F_CREATE` (the kernel makes a missing table
/// anyway, and keeps an existing one unless `NLM_F_EXCL`), sets and
/// chains with `NLM_F_CREATE`, rules appended.
fn encode_table(
    w: &mut MsgWriter,
    msgs: &mut Vec<SentMsg>,
    next: &mut u32,
    set_ids: &mut u32,
    op_index: usize,
    def: &TableDef,
) -> Result<(), NftError> {
    check_table(def)?;
    let table = &def.table;
    let family = table.family.nfproto();
    let table_flags = if def.exclusive {
        NLM_F_REQUEST | NLM_F_EXCL
    } else {
        NLM_F_REQUEST
    };
    let start = begin_part(
        w,
        msgs,
        next,
        NFT_MSG_NEWTABLE,
        table_flags,
        family,
        op_index,
        TablePart::Table,
    );
    w.attr_str(NFTA_TABLE_NAME, &table.name);
    w.attr_be32(NFTA_TABLE_FLAGS, 0);
    w.end_msg(start);

    for (i, chain) in def.chains.iter().enumerate() {
        let start = begin_part(
            w,
            msgs,
            next,
            NFT_MSG_NEWCHAIN,
            NLM_F_REQUEST | NLM_F_CREATE,
            family,
            op_index,
            TablePart::Chain(i),
        );
        w.attr_str(NFTA_CHAIN_TABLE, &table.name);
        w.attr_str(NFTA_CHAIN_NAME, &chain.name);
        w.attr_str(NFTA_CHAIN_TYPE, chain.kind.name());
        let policy = match chain.policy {
            super::ChainPolicy::Accept => NF_ACCEPT,
            super::ChainPolicy::Drop => NF_DROP,
        };
        w.attr_be32(NFTA_CHAIN_POLICY, policy as u32);
        let hook = w.begin_nest(NFTA_CHAIN_HOOK);
        w.attr_be32(NFTA_HOOK_HOOKNUM, chain.hook.number());
        w.attr_be32(NFTA_HOOK_PRIORITY, chain.priority as u32);
        w.end_nest(hook);
        w.end_msg(start);
    }

    let mut ids: HashMap<&str, u32> = HashMap::new();
    for (i, set) in def.sets.iter().enumerate() {
        *set_ids += 1;
        let id = *set_ids;
        ids.insert(&set.name, id);
        let key = set.key_shape().expect("checked");
        let data = set.data_shape().expect("checked");
        let concat = key.field_lens.len() > 1;
        let mut flags = 0;
        if data.is_some() {
            flags |= NFT_SET_MAP;
        }
        if set.interval {
            flags |= NFT_SET_INTERVAL;
            // nft describes the fields of concatenated ranges, which the
            // kernel then keeps in its `pipapo` backend.
            if concat {
                flags |= NFT_SET_CONCAT;
            }
        }
        let start = begin_part(
            w,
            msgs,
            next,
            NFT_MSG_NEWSET,
            NLM_F_REQUEST | NLM_F_CREATE,
            family,
            op_index,
            TablePart::Set(i),
        );
        w.attr_str(NFTA_SET_TABLE, &table.name);
        w.attr_str(NFTA_SET_NAME, &set.name);
        w.attr_be32(NFTA_SET_FLAGS, flags);
        w.attr_be32(NFTA_SET_KEY_TYPE, key.type_id);
        w.attr_be32(NFTA_SET_KEY_LEN, key.len as u32);
        if let Some(data) = &data {
            w.attr_be32(NFTA_SET_DATA_TYPE, data.type_id);
            w.attr_be32(NFTA_SET_DATA_LEN, data.len as u32);
        }
        w.attr_be32(NFTA_SET_ID, id);
        if flags & NFT_SET_CONCAT != 0 {
            let desc = w.begin_nest(NFTA_SET_DESC);
            let fields = w.begin_nest(NFTA_SET_DESC_CONCAT);
            for len in &key.field_lens {
                let field = w.begin_nest(NFTA_LIST_ELEM);
                w.attr_be32(NFTA_SET_FIELD_LEN, *len as u32);
                w.end_nest(field);
            }
            w.end_nest(fields);
            w.end_nest(desc);
        }
        w.end_msg(start);
        if !set.elements.is_empty() {
            let sref = SetRef::new(table.family, &table.name, &set.name);
            let first = msgs.len();
            encode_elements(
                w,
                msgs,
                next,
                op_index,
                ElementOp::Add,
                &sref,
                Some(id),
                &set.elements,
            )?;
            for m in &mut msgs[first..] {
                m.part = Some(TablePart::Elements(i));
            }
        }
    }

    for (i, rule) in def.rules.iter().enumerate() {
        let start = begin_part(
            w,
            msgs,
            next,
            NFT_MSG_NEWRULE,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND,
            family,
            op_index,
            TablePart::Rule(i),
        );
        w.attr_str(NFTA_RULE_TABLE, &table.name);
        w.attr_str(NFTA_RULE_CHAIN, rule.chain());
        let list = w.begin_nest(NFTA_RULE_EXPRESSIONS);
        let mut spans = Vec::with_capacity(rule.exprs().len());
        for (index, e) in rule.exprs().iter().enumerate() {
            let at = (w.len() - start) as u32;
            e.encode(w, |name| ids.get(name).copied());
            spans.push(ElementSpan {
                start: at,
                end: (w.len() - start) as u32,
                index,
            });
        }
        if !w.end_nest(list) {
            return Err(NftError::InvalidValue {
                what: format!("{}: rule {}", chain_object(table, rule.chain()), i + 1),
                reason: "too many expressions for one netlink attribute".into(),
            });
        }
        w.end_msg(start);
        msgs.last_mut().expect("just pushed").elements = spans;
    }
    Ok(())
}

fn put_value(w: &mut MsgWriter, ty: u16, bytes: &[u8]) {
    let nest = w.begin_nest(ty);
    w.attr(NFTA_DATA_VALUE, bytes);
    w.end_nest(nest);
}

/// A request (dump or get) addressed to one set or table.
pub(crate) fn encode_request(
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    names: &[(u16, &str)],
) -> Vec<u8> {
    let mut w = MsgWriter::default();
    let start = w.begin_msg(nft_msg_type(ty), NLM_F_REQUEST | flags, seq, family, 0);
    for (attr, name) in names {
        w.attr_str(*attr, name);
    }
    w.end_msg(start);
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::{Batch, Family, Value};
    use std::net::Ipv4Addr;

    #[test]
    fn batches_ack_only_the_last_message_and_split_big_lists() {
        let set = SetRef::new(Family::Inet, "netloom-t", "s");
        let many: Vec<Element> = (0..5000u32)
            .map(|i| Element::new(Value::Ipv4Addr(Ipv4Addr::from(i))))
            .collect();
        let mut batch = Batch::new();
        batch.add(&set, many).flush(&set);
        let enc = encode_batch(&batch.ops, 100).unwrap();
        assert!(enc.msgs.len() > 2, "5000 elements need several messages");
        assert_eq!(enc.begin_seq, 100);
        assert_eq!(enc.end_seq, 100 + enc.msgs.len() as u32 + 1);
        let msgs: Vec<_> = messages(&enc.bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), enc.msgs.len() + 2);
        let acked: Vec<_> = msgs
            .iter()
            .filter(|m| m.flags & NLM_F_ACK != 0)
            .map(|m| m.seq)
            .collect();
        assert_eq!(acked, vec![enc.msgs.last().unwrap().seq]);
        let counted: usize = enc.msgs.iter().map(|m| m.elements.len()).sum();
        assert_eq!(counted, 5000);
    }

    #[test]
    fn foreign_tables_are_refused_before_encoding() {
        let mut batch = Batch::new();
        batch.delete_table(&TableRef::new(Family::Inet, "filter"));
        let err = encode_batch(&batch.ops, 1).err().unwrap().to_string();
        assert!(
            err.contains("nft table inet filter: refused: not a netloom table"),
            "{err}"
        );
    }
}
