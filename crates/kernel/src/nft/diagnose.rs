//! Turning the kernel's error numbers into errors that name the table,
//! set and element, and say what went wrong and what to do.

use nix::errno::Errno;

use super::decode::{shape_mismatch, SetInfo};
use super::element::{Element, ElementData, Verdict};
use super::encode::{chain_object, EncodedBatch, SentMsg, TablePart};
use super::error::NftError;
use super::expr::Expr;
use super::msg::{NlError, NFT_SET_CONCAT, NFT_SET_INTERVAL, NFT_SET_MAP};
use super::rules::TableDef;
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
            BatchOp::AddTable(def) => table_part_error(def, sent, &f, errno),
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

/// The object, action and cause of a failed message of an
/// [`BatchOp::AddTable`]. Nothing of the table exists afterwards (the
/// batch was undone), so unlike other failures the kernel is not asked.
fn table_part_error(
    def: &TableDef,
    sent: &SentMsg,
    f: &NlError,
    errno: Errno,
) -> (String, String, String) {
    let table = &def.table;
    let pointed = |len: usize| {
        f.offset
            .and_then(|off| sent.elements.iter().find(|s| s.start <= off && off < s.end))
            .map(|s| s.index)
            .filter(|&i| i < len)
    };
    let common = || match errno {
        Errno::EPERM => "needs CAP_NET_ADMIN in the network namespace".to_string(),
        _ => String::new(),
    };
    match sent.part {
        None | Some(TablePart::Table) => {
            let cause = match errno {
                Errno::EEXIST => "the table already exists".into(),
                Errno::EAFNOSUPPORT | Errno::EOPNOTSUPP => format!(
                    "the kernel does not support nf_tables' {} family",
                    table.family
                ),
                _ => common(),
            };
            let verb = if def.exclusive { "create" } else { "add" };
            (table.to_string(), format!("{verb} table"), cause)
        }
        Some(TablePart::Chain(i)) => {
            let c = &def.chains[i];
            let cause = match errno {
                Errno::EEXIST | Errno::EBUSY => {
                    "a chain of that name with another type, hook or priority is in the table"
                        .into()
                }
                Errno::ENOENT | Errno::EOPNOTSUPP => format!(
                    "the kernel has no {} chains with hook {} for the {} family",
                    c.kind.name(),
                    c.hook.name(),
                    table.family
                ),
                _ => common(),
            };
            let action = format!(
                "add chain (type {} hook {} priority {})",
                c.kind.name(),
                c.hook.name(),
                c.priority
            );
            (chain_object(table, &c.name), action, cause)
        }
        Some(TablePart::Set(i)) => {
            let set = &def.sets[i];
            let info = set_info(def, i);
            let kind = if set.data.is_some() { "map" } else { "set" };
            let cause = match errno {
                Errno::EEXIST => {
                    format!("a {kind} of that name but of another type is in the table")
                }
                Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ERANGE => format!(
                    "the kernel rejected a {kind} of type {}",
                    describe_type(&info)
                ),
                _ => common(),
            };
            let sref = SetRef::new(table.family, &table.name, &set.name);
            (sref.to_string(), format!("add {kind}"), cause)
        }
        Some(TablePart::Elements(i)) => {
            let set = &def.sets[i];
            let sref = SetRef::new(table.family, &table.name, &set.name);
            let element = pointed(set.elements.len()).map(|k| &set.elements[k]).or(
                if set.elements.len() == 1 {
                    set.elements.first()
                } else {
                    None
                },
            );
            let action = match element {
                Some(e) => format!("add element {e}"),
                None => describe_elements(ElementOp::Add, &set.elements),
            };
            let cause = match errno {
                Errno::EEXIST => "the key is given twice with different data".into(),
                Errno::ENOTEMPTY => "the element overlaps another interval".into(),
                Errno::EINVAL | Errno::ERANGE | Errno::EOVERFLOW => element
                    .and_then(|e| shape_mismatch(&set_info(def, i), e))
                    .unwrap_or_else(|| {
                        "the kernel rejected the element; does it match the set's type?".into()
                    }),
                _ => common(),
            };
            (sref.to_string(), action, cause)
        }
        Some(TablePart::Rule(i)) => {
            let rule = &def.rules[i];
            let exprs = rule.exprs();
            let expr = pointed(exprs.len()).map(|k| &exprs[k]);
            let undefined_set = |e: &Expr| match e {
                Expr::Lookup { set, .. } if def.find_set(set).is_none() => Some(set.clone()),
                _ => None,
            };
            let chain_known = def.chains.iter().any(|c| c.name == rule.chain());
            let mut cause = match (errno, expr) {
                (Errno::ENOENT, Some(Expr::Lookup { set, .. })) => format!(
                    "its lookup names set {set:?}, which is not in the table                      (neither there already nor added by this batch)"
                ),
                (Errno::ENOENT, Some(e)) => format!(
                    "the kernel does not know the {:?} expression (is its module available?)",
                    e.name()
                ),
                (Errno::ENOENT, None) if !chain_known => format!(
                    "chain {:?} is not in the table (neither there already nor added by this batch)",
                    rule.chain()
                ),
                (Errno::ENOENT, None) => match exprs.iter().find_map(undefined_set) {
                    Some(set) => format!(
                        "its lookup names set {set:?}, which is not in the table                          (neither there already nor added by this batch)"
                    ),
                    None => String::new(),
                },
                (Errno::ENODATA, Some(e)) => format!(
                    "[ {e} ] reads a register that no earlier expression of the rule loaded"
                ),
                (Errno::EOPNOTSUPP, Some(e)) => format!(
                    "[ {e} ] cannot be used in this chain (its type or hook does not allow it)"
                ),
                (_, Some(e)) => format!("the kernel rejected [ {e} ]"),
                _ => common(),
            };
            if let (Some(e), false) = (expr, cause.contains("[ ")) {
                cause = format!("at [ {e} ]: {cause}");
            }
            (
                chain_object(table, rule.chain()),
                format!("add rule {}", i + 1),
                cause,
            )
        }
    }
}

/// The kernel's view of set `i` of a definition (for messages).
fn set_info(def: &TableDef, i: usize) -> SetInfo {
    let set = &def.sets[i];
    let key = set.key_shape().ok();
    let data = set.data_shape().ok().flatten();
    let mut flags = 0;
    if data.is_some() {
        flags |= NFT_SET_MAP;
    }
    if set.interval {
        flags |= NFT_SET_INTERVAL;
        if set.key.len() > 1 {
            flags |= NFT_SET_CONCAT;
        }
    }
    SetInfo {
        set: SetRef::new(def.table.family, &def.table.name, &set.name),
        flags,
        key_type: key.as_ref().map(|k| k.type_id),
        key_len: key.as_ref().map_or(0, |k| k.len),
        data_type: data.as_ref().map(|d| d.type_id),
        data_len: data.as_ref().map_or(0, |d| d.len),
        field_lens: key.map(|k| k.field_lens).unwrap_or_default(),
    }
}

fn describe_type(info: &SetInfo) -> String {
    if info.is_map() {
        format!("{} : {}", info.key_type_name(), info.data_type_name())
    } else {
        info.key_type_name()
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
