//! Turning the kernel's error numbers into errors that name the table,
//! set and element, and say what went wrong and what to do.

use nix::errno::Errno;

use super::decode::shape_mismatch;
use super::element::{Element, ElementData, Verdict};
use super::encode::EncodedBatch;
use super::error::NftError;
use super::msg::NlError;
use super::{Batch, BatchOp, ElementOp, NftSocket, SetRef};

impl NftSocket {
    /// Why a request on `set` failed with `errno`, when its table or the set
    /// itself is missing.
    pub(super) fn missing_cause(&mut self, set: &SetRef, errno: i32) -> Option<String> {
        if errno != libc::ENOENT {
            return None;
        }
        match self.table_exists(&set.table_ref()) {
            Ok(false) => {
                Some("the table does not exist; was the network's skeleton applied?".into())
            }
            Ok(true) if self.set_missing(set) => {
                Some("the set does not exist; was the network's skeleton applied?".into())
            }
            Ok(true) => None,
            Err(_) => None,
        }
    }

    /// Turns the first failure of a batch into an error that names the
    /// operation, the element and the cause.
    pub(super) fn batch_error(
        &mut self,
        batch: &Batch,
        enc: &EncodedBatch,
        f: NlError,
    ) -> NftError {
        let errno = Errno::from_raw(f.errno);
        let Some(sent) = enc.msgs.iter().find(|m| m.seq == f.seq) else {
            return nack_error(
                "nft batch",
                &format!("commit {} operations", batch.ops.len()),
                &f,
                String::new(),
            );
        };
        let (object, action, mut cause) = match &batch.ops[sent.op] {
            BatchOp::Elements { op, set, elements } => {
                let pointed = f
                    .offset
                    .and_then(|off| sent.elements.iter().find(|s| s.start <= off && off < s.end))
                    .map(|s| &elements[s.index]);
                let element = pointed.or(if elements.len() == 1 {
                    elements.first()
                } else {
                    None
                });
                let action = match element {
                    Some(e) => format!("{} element {e}", op.verb()),
                    None => describe_elements(*op, elements),
                };
                (
                    set.to_string(),
                    action,
                    self.element_cause(errno, *op, set, element),
                )
            }
            BatchOp::Flush { set } => {
                let cause = self.missing_cause(set, f.errno).unwrap_or_default();
                (set.to_string(), "flush set".to_string(), cause)
            }
            BatchOp::DeleteTable { table } => {
                let cause = match errno {
                    Errno::ENOENT => "the table does not exist".to_string(),
                    Errno::EBUSY => "something still uses the table".to_string(),
                    _ => String::new(),
                };
                (table.to_string(), "delete table".to_string(), cause)
            }
        };
        if enc.msgs.len() > 1 {
            if !cause.is_empty() {
                cause.push(' ');
            }
            cause.push_str("(nothing in the batch was applied)");
        }
        nack_error(&object, &action, &f, cause)
    }

    fn element_cause(
        &mut self,
        errno: Errno,
        op: ElementOp,
        set: &SetRef,
        element: Option<&Element>,
    ) -> String {
        let adding = matches!(op, ElementOp::Add | ElementOp::Create);
        match errno {
            Errno::ENOENT => {
                if let Some(cause) = self.missing_cause(set, libc::ENOENT) {
                    return cause;
                }
                let names_chain = matches!(
                    element.and_then(|e| e.data.as_ref()),
                    Some(ElementData::Verdict(Verdict::Jump(_) | Verdict::Goto(_)))
                );
                if !adding {
                    "the element is not in the set".into()
                } else if names_chain {
                    "the chain named by the element's verdict does not exist in the table".into()
                } else {
                    String::new()
                }
            }
            Errno::EEXIST if op == ElementOp::Create => "the element is already in the set".into(),
            Errno::EEXIST => {
                "the key is already in the map with different data; delete it first".into()
            }
            Errno::EINVAL | Errno::ERANGE | Errno::EOVERFLOW => {
                let mismatch = element.and_then(|e| {
                    self.set_info(set)
                        .ok()
                        .and_then(|info| shape_mismatch(&info, e))
                });
                mismatch.unwrap_or_else(|| {
                    "the kernel rejected the element; does it match the set's type?".into()
                })
            }
            Errno::ENFILE | Errno::ENOSPC => "the set is full (it has a size limit)".into(),
            Errno::ENOTEMPTY => "the element overlaps an interval already in the set".into(),
            Errno::EPERM => "needs CAP_NET_ADMIN in the network namespace".into(),
            Errno::EOPNOTSUPP if op == ElementOp::Destroy => {
                "destroying elements needs Linux 6.3 or later".into()
            }
            _ => String::new(),
        }
    }
}

fn describe_elements(op: ElementOp, elements: &[Element]) -> String {
    const SHOWN: usize = 3;
    let shown: Vec<String> = elements.iter().take(SHOWN).map(|e| e.to_string()).collect();
    let more = elements.len().saturating_sub(SHOWN);
    let tail = if more > 0 {
        format!(", ... ({more} more)")
    } else {
        String::new()
    };
    format!("{} elements {{ {}{tail} }}", op.verb(), shown.join(", "))
}

pub(super) fn nack_error(object: &str, action: &str, n: &NlError, mut cause: String) -> NftError {
    if let Some(m) = n.message.as_deref().filter(|m| !m.is_empty()) {
        if !cause.is_empty() {
            cause.push(' ');
        }
        cause.push_str(&format!("(kernel: {m})"));
    }
    NftError::Kernel {
        object: object.to_string(),
        action: action.to_string(),
        errno: Errno::from_raw(n.errno),
        cause,
    }
}
