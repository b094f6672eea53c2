//! nfnetlink message layout: netlink headers, the `nfgenmsg` header,
//! attributes (TLVs), and the numbers from `linux/netfilter/nf_tables.h`
//! and `linux/netfilter/nfnetlink.h` that this module uses.
//!
//! Netlink header fields are in host byte order; nf_tables' own integer
//! attributes are big-endian.

// --- netlink (linux/netlink.h) ---
pub(crate) const NLMSG_HDR_LEN: usize = 16;
pub(crate) const NLMSG_NOOP: u16 = 1;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_APPEND: u16 = 0x800;
/// In an error message: the original message's payload was left out.
pub(crate) const NLM_F_CAPPED: u16 = 0x100;
/// In an error message: extended-ack attributes follow.
pub(crate) const NLM_F_ACK_TLVS: u16 = 0x200;
pub(crate) const NLMSGERR_ATTR_MSG: u16 = 1;
pub(crate) const NLMSGERR_ATTR_OFFS: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

// --- nfnetlink (linux/netfilter/nfnetlink.h) ---
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(crate) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(crate) const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFGENMSG_LEN: usize = 4;

// --- nf_tables (linux/netfilter/nf_tables.h), enum nf_tables_msg_types ---
pub(crate) const NFT_MSG_NEWTABLE: u16 = 0;
pub(crate) const NFT_MSG_GETTABLE: u16 = 1;
pub(crate) const NFT_MSG_DELTABLE: u16 = 2;
pub(crate) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(crate) const NFT_MSG_NEWRULE: u16 = 6;
pub(crate) const NFT_MSG_NEWSET: u16 = 9;
pub(crate) const NFT_MSG_GETSET: u16 = 10;
pub(crate) const NFT_MSG_NEWSETELEM: u16 = 12;
pub(crate) const NFT_MSG_GETSETELEM: u16 = 13;
pub(crate) const NFT_MSG_DELSETELEM: u16 = 14;
/// Linux 6.3+: like DELSETELEM, but an absent element is not an error.
pub(crate) const NFT_MSG_DESTROYSETELEM: u16 = 30;

// enum nft_table_attributes
pub(crate) const NFTA_TABLE_NAME: u16 = 1;
pub(crate) const NFTA_TABLE_FLAGS: u16 = 2;
// enum nft_chain_attributes
pub(crate) const NFTA_CHAIN_TABLE: u16 = 1;
pub(crate) const NFTA_CHAIN_NAME: u16 = 3;
pub(crate) const NFTA_CHAIN_HOOK: u16 = 4;
pub(crate) const NFTA_CHAIN_POLICY: u16 = 5;
pub(crate) const NFTA_CHAIN_TYPE: u16 = 7;
// enum nft_hook_attributes
pub(crate) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(crate) const NFTA_HOOK_PRIORITY: u16 = 2;
// enum nft_rule_attributes
pub(crate) const NFTA_RULE_TABLE: u16 = 1;
pub(crate) const NFTA_RULE_CHAIN: u16 = 2;
pub(crate) const NFTA_RULE_EXPRESSIONS: u16 = 4;
// enum nft_expr_attributes
pub(crate) const NFTA_EXPR_NAME: u16 = 1;
pub(crate) const NFTA_EXPR_DATA: u16 = 2;
// enum nft_meta_attributes, enum nft_meta_keys
pub(crate) const NFTA_META_DREG: u16 = 1;
pub(crate) const NFTA_META_KEY: u16 = 2;
pub(crate) const NFT_META_IIFNAME: u32 = 6;
pub(crate) const NFT_META_OIFNAME: u32 = 7;
pub(crate) const NFT_META_NFPROTO: u32 = 15;
pub(crate) const NFT_META_L4PROTO: u32 = 16;
// enum nft_cmp_attributes, enum nft_cmp_ops
pub(crate) const NFTA_CMP_SREG: u16 = 1;
pub(crate) const NFTA_CMP_OP: u16 = 2;
pub(crate) const NFTA_CMP_DATA: u16 = 3;
pub(crate) const NFT_CMP_EQ: u32 = 0;
pub(crate) const NFT_CMP_NEQ: u32 = 1;
// enum nft_payload_attributes, enum nft_payload_bases
pub(crate) const NFTA_PAYLOAD_DREG: u16 = 1;
pub(crate) const NFTA_PAYLOAD_BASE: u16 = 2;
pub(crate) const NFTA_PAYLOAD_OFFSET: u16 = 3;
pub(crate) const NFTA_PAYLOAD_LEN: u16 = 4;
pub(crate) const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub(crate) const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
// enum nft_lookup_attributes
pub(crate) const NFTA_LOOKUP_SET: u16 = 1;
pub(crate) const NFTA_LOOKUP_SREG: u16 = 2;
pub(crate) const NFTA_LOOKUP_DREG: u16 = 3;
pub(crate) const NFTA_LOOKUP_SET_ID: u16 = 4;
// enum nft_fib_attributes, enum nft_fib_result, enum nft_fib_flags
pub(crate) const NFTA_FIB_DREG: u16 = 1;
pub(crate) const NFTA_FIB_RESULT: u16 = 2;
pub(crate) const NFTA_FIB_FLAGS: u16 = 3;
pub(crate) const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
pub(crate) const NFTA_FIB_F_SADDR: u32 = 1;
pub(crate) const NFTA_FIB_F_DADDR: u32 = 2;
// enum nft_immediate_attributes
pub(crate) const NFTA_IMMEDIATE_DREG: u16 = 1;
pub(crate) const NFTA_IMMEDIATE_DATA: u16 = 2;
// enum nft_nat_attributes, enum nft_nat_types
pub(crate) const NFTA_NAT_TYPE: u16 = 1;
pub(crate) const NFTA_NAT_FAMILY: u16 = 2;
pub(crate) const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
pub(crate) const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
pub(crate) const NFT_NAT_SNAT: u32 = 0;
pub(crate) const NFT_NAT_DNAT: u32 = 1;
// enum nft_set_attributes
pub(crate) const NFTA_SET_TABLE: u16 = 1;
pub(crate) const NFTA_SET_NAME: u16 = 2;
pub(crate) const NFTA_SET_FLAGS: u16 = 3;
pub(crate) const NFTA_SET_KEY_TYPE: u16 = 4;
pub(crate) const NFTA_SET_KEY_LEN: u16 = 5;
pub(crate) const NFTA_SET_DATA_TYPE: u16 = 6;
pub(crate) const NFTA_SET_DATA_LEN: u16 = 7;
pub(crate) const NFTA_SET_DESC: u16 = 9;
pub(crate) const NFTA_SET_ID: u16 = 10;
// enum nft_set_desc_attributes / nft_set_field_attributes
pub(crate) const NFTA_SET_DESC_CONCAT: u16 = 2;
pub(crate) const NFTA_SET_FIELD_LEN: u16 = 1;
// enum nft_list_attributes
pub(crate) const NFTA_LIST_ELEM: u16 = 1;
// enum nft_set_elem_list_attributes
pub(crate) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(crate) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(crate) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(crate) const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
// enum nft_set_elem_attributes
pub(crate) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(crate) const NFTA_SET_ELEM_DATA: u16 = 2;
pub(crate) const NFTA_SET_ELEM_FLAGS: u16 = 3;
pub(crate) const NFTA_SET_ELEM_KEY_END: u16 = 10;
// enum nft_set_elem_flags
pub(crate) const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
// enum nft_data_attributes
pub(crate) const NFTA_DATA_VALUE: u16 = 1;
pub(crate) const NFTA_DATA_VERDICT: u16 = 2;
// enum nft_verdict_attributes
pub(crate) const NFTA_VERDICT_CODE: u16 = 1;
pub(crate) const NFTA_VERDICT_CHAIN: u16 = 2;
// verdict codes: NF_DROP, NF_ACCEPT (netfilter.h) and enum nft_verdicts
pub(crate) const NF_DROP: i32 = 0;
pub(crate) const NF_ACCEPT: i32 = 1;
pub(crate) const NFT_CONTINUE: i32 = -1;
pub(crate) const NFT_JUMP: i32 = -3;
pub(crate) const NFT_GOTO: i32 = -4;
pub(crate) const NFT_RETURN: i32 = -5;
/// `NFTA_SET_DATA_TYPE` of verdict maps (`NFT_DATA_VERDICT`).
pub(crate) const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
// enum nft_set_flags
pub(crate) const NFT_SET_INTERVAL: u32 = 0x4;
pub(crate) const NFT_SET_MAP: u32 = 0x8;
pub(crate) const NFT_SET_CONCAT: u32 = 0x80;

/// Bits per component in nft's concatenated type ids.
pub(crate) const NFT_TYPE_BITS: u32 = 6;

/// Largest attribute length (`nla_len` is 16 bits).
pub(crate) const MAX_ATTR_LEN: usize = u16::MAX as usize;

pub(crate) fn nft_msg_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A buffer of netlink messages under construction.
#[derive(Default)]
pub(crate) struct MsgWriter {
    pub(crate) buf: Vec<u8>,
}

impl MsgWriter {
    /// Starts a message with an `nfgenmsg` header; returns its start offset
    /// for [`MsgWriter::end_msg`].
    pub(crate) fn begin_msg(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, fixed up later
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    pub(crate) fn end_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Appends one attribute, padded to 4 bytes.
    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// A NUL-terminated string attribute.
    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(ty, &data);
    }

    pub(crate) fn attr_be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// Opens a nested attribute; returns its offset for [`MsgWriter::end_nest`].
    pub(crate) fn begin_nest(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    /// Closes a nest. Returns false (leaving the length unset) when the nest
    /// has grown past what a 16-bit length can hold.
    pub(crate) fn end_nest(&mut self, start: usize) -> bool {
        let len = self.buf.len() - start;
        if len > MAX_ATTR_LEN {
            return false;
        }
        self.buf[start..start + 2].copy_from_slice(&(len as u16).to_ne_bytes());
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }
}

/// One received netlink message.
pub(crate) struct NlMsg<'a> {
    pub(crate) ty: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    /// Everything after the netlink header.
    pub(crate) payload: &'a [u8],
}

impl<'a> NlMsg<'a> {
    /// The family from the `nfgenmsg` header and the attributes after it.
    pub(crate) fn nfgen(&self) -> Option<(u8, Attrs<'a>)> {
        let family = *self.payload.first()?;
        let attrs = self.payload.get(NFGENMSG_LEN..)?;
        Some((family, Attrs(attrs)))
    }
}

/// Splits a datagram into netlink messages. Stops at the first malformed one.
pub(crate) fn messages(mut buf: &[u8]) -> impl Iterator<Item = Result<NlMsg<'_>, String>> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDR_LEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDR_LEN || len > buf.len() {
            buf = &[];
            return Some(Err(format!(
                "netlink message length {len} is out of bounds"
            )));
        }
        let msg = NlMsg {
            ty: u16::from_ne_bytes(buf[4..6].try_into().unwrap()),
            flags: u16::from_ne_bytes(buf[6..8].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[8..12].try_into().unwrap()),
            payload: &buf[NLMSG_HDR_LEN..len],
        };
        buf = buf.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    })
}

/// An `NLMSG_ERROR` message: an ack (`errno == 0`) or an error.
pub(crate) struct NlError {
    /// Positive errno, 0 for an ack.
    pub(crate) errno: i32,
    /// Sequence number of the message it answers.
    pub(crate) seq: u32,
    /// Extended ack: the kernel's message.
    pub(crate) message: Option<String>,
    /// Extended ack: offset of the offending attribute in the message.
    pub(crate) offset: Option<u32>,
}

pub(crate) fn parse_error(msg: &NlMsg<'_>) -> Result<NlError, String> {
    let p = msg.payload;
    if p.len() < 4 + NLMSG_HDR_LEN {
        return Err(format!("error message of {} bytes is too short", p.len()));
    }
    let err = i32::from_ne_bytes(p[0..4].try_into().unwrap());
    let orig_len = u32::from_ne_bytes(p[4..8].try_into().unwrap()) as usize;
    let seq = u32::from_ne_bytes(p[12..16].try_into().unwrap());
    let mut out = NlError {
        errno: -err,
        seq,
        message: None,
        offset: None,
    };
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        let tlv_at = if msg.flags & NLM_F_CAPPED != 0 {
            4 + NLMSG_HDR_LEN
        } else {
            4 + align4(orig_len)
        };
        for (ty, data) in Attrs(p.get(tlv_at..).unwrap_or(&[])) {
            match ty {
                NLMSGERR_ATTR_MSG => out.message = Some(attr_string(data)),
                NLMSGERR_ATTR_OFFS if data.len() == 4 => {
                    out.offset = Some(u32::from_ne_bytes(data.try_into().unwrap()))
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Iterates over attributes: `(type without flag bits, payload)`.
#[derive(Clone)]
pub(crate) struct Attrs<'a>(pub(crate) &'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([self.0[0], self.0[1]]) as usize;
        let ty = u16::from_ne_bytes([self.0[2], self.0[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.0.len() {
            self.0 = &[];
            return None;
        }
        let data = &self.0[4..len];
        self.0 = self.0.get(align4(len)..).unwrap_or(&[]);
        Some((ty, data))
    }
}

/// A string attribute, without its NUL terminator.
pub(crate) fn attr_string(data: &[u8]) -> String {
    let end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

pub(crate) fn attr_be32(data: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(data.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_attributes_round_trip() {
        let mut w = MsgWriter::default();
        let start = w.begin_msg(nft_msg_type(NFT_MSG_GETSET), NLM_F_REQUEST, 7, 1, 0);
        w.attr_str(NFTA_SET_TABLE, "netloom-x");
        let nest = w.begin_nest(NFTA_SET_DESC);
        w.attr_be32(NFTA_SET_FIELD_LEN, 4);
        assert!(w.end_nest(nest));
        w.end_msg(start);
        let msgs: Vec<_> = messages(&w.buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].seq, 7);
        assert_eq!(msgs[0].ty, 0x0a0a);
        let (family, attrs) = msgs[0].nfgen().unwrap();
        assert_eq!(family, 1);
        let attrs: Vec<_> = attrs.collect();
        assert_eq!(attrs[0], (NFTA_SET_TABLE, &b"netloom-x\0"[..]));
        assert_eq!(attrs[1].0, NFTA_SET_DESC);
        let inner: Vec<_> = Attrs(attrs[1].1).collect();
        assert_eq!(attr_be32(inner[0].1), Some(4));
    }

    #[test]
    fn oversized_nests_are_reported() {
        let mut w = MsgWriter::default();
        let nest = w.begin_nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        w.attr(NFTA_LIST_ELEM, &[0u8; 65000]);
        w.attr(NFTA_LIST_ELEM, &[0u8; 1000]);
        assert!(!w.end_nest(nest));
    }
}
