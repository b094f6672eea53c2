//! Encoding batches and requests as nf_tables netlink messages.

use super::element::{Element, ElementData, Verdict};
use super::error::NftError;
use super::msg::*;
use super::value::{encode_values, increment_be};
use super::{BatchOp, ElementOp, SetRef, TableRef};

/// Where an element sits in a sent message, to map the kernel's extended
/// ack (an attribute offset) back to it.
pub(crate) struct ElementSpan {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) index: usize,
}

/// One message of an encoded batch.
pub(crate) struct SentMsg {
    pub(crate) seq: u32,
    /// Index of the batch operation it carries.
    pub(crate) op: usize,
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
    for (i, op) in ops.iter().enumerate() {
        match op {
            BatchOp::Elements {
                op: eop,
                set,
                elements,
            } => encode_elements(&mut w, &mut msgs, &mut next, i, *eop, set, elements)?,
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

fn encode_elements(
    w: &mut MsgWriter,
    msgs: &mut Vec<SentMsg>,
    next: &mut u32,
    op_index: usize,
    op: ElementOp,
    set: &SetRef,
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
                    w.attr_str(
                        NFTA_VERDICT_CHAIN,
                        checked_name(chain, "chain", &format!("element {e}"))?,
                    );
                }
                w.end_nest(nest);
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
