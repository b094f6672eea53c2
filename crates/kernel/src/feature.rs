//! Run-time detection of kernel features.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::Result;
use crate::link::is_unknown_kind;
use crate::netns::Netns;
use crate::socket::{Netlink, NLM_F_CREATE, NLM_F_EXCL};

fn cache() -> &'static Mutex<HashMap<String, bool>> {
    static CACHE: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

pub(crate) fn remember_link_kind(kind: &str, supported: bool) {
    cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(kind.to_owned(), supported);
}

/// Whether the kernel can create links of type `kind` (`"ipvlan"`,
/// `"macvlan"`, `"vxlan"`, ...).
///
/// The first call per kind asks the kernel: it creates a throwaway
/// namespace, tries to create such a link there (the kernel loads the
/// module if it can), and drops the namespace with whatever was made. The
/// answer is cached for the life of the process. Only "unknown device
/// type" counts as unsupported; any other refusal (our probe gives no
/// parent or options) means the kernel knows the type.
pub fn supports_link_kind(kind: &str) -> Result<bool> {
    if let Some(&known) = cache().lock().unwrap_or_else(|p| p.into_inner()).get(kind) {
        return Ok(known);
    }
    let scratch = Netns::create_anonymous()?;
    let mut netlink = Netlink::open_in(&scratch)?;
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName("nlprobe0".into()));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Other(kind.to_owned()),
        )]));
    let outcome = netlink.ack(
        &RouteNetlinkMessage::NewLink(msg),
        NLM_F_CREATE | NLM_F_EXCL,
        || format!("probe link type {kind:?}"),
    );
    let supported = match outcome {
        Ok(()) => true,
        Err(err) => !is_unknown_kind(&err),
    };
    remember_link_kind(kind, supported);
    Ok(supported)
}
