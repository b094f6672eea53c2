//! IP addresses on links.

use std::net::IpAddr;

use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::socket::{Netlink, NLM_F_CREATE, NLM_F_EXCL};
use crate::types::{Family, IpPrefix, Scope};

/// Options for [`Netlink::add_address`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressOptions {
    /// Skip IPv6 duplicate address detection (`IFA_F_NODAD`), so the
    /// address is usable at once instead of after DAD (about a second).
    /// Ignored for IPv4.
    pub nodad: bool,
}

impl AddressOptions {
    /// Options with DAD disabled.
    pub fn nodad() -> Self {
        AddressOptions { nodad: true }
    }
}

/// An address as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// Index of the link that carries it.
    pub index: u32,
    /// The address and its prefix length.
    pub prefix: IpPrefix,
    /// Its scope.
    pub scope: Scope,
    /// Static (not from autoconfiguration).
    pub permanent: bool,
    /// Added with DAD disabled.
    pub nodad: bool,
    /// Still undergoing DAD (IPv6), not yet usable.
    pub tentative: bool,
    /// DAD found a duplicate (IPv6).
    pub dad_failed: bool,
}

pub(crate) fn address_family(family: Family) -> AddressFamily {
    match family {
        Family::Ipv4 => AddressFamily::Inet,
        Family::Ipv6 => AddressFamily::Inet6,
    }
}

fn address_message(link: u32, prefix: IpPrefix) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = address_family(prefix.family());
    msg.header.prefix_len = prefix.prefix_len();
    msg.header.index = link;
    msg.attributes.push(AddressAttribute::Local(prefix.addr()));
    msg.attributes
        .push(AddressAttribute::Address(prefix.addr()));
    msg
}

impl Netlink {
    /// Adds `prefix` (e.g. `10.0.0.2/24`) to link `link`. Fails with
    /// `EEXIST` if the link already has it.
    pub fn add_address(
        &mut self,
        link: u32,
        prefix: IpPrefix,
        options: AddressOptions,
    ) -> Result<()> {
        let mut msg = address_message(link, prefix);
        if options.nodad && prefix.family() == Family::Ipv6 {
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.ack(
            &RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("add address {prefix} to link #{link}"),
        )
    }

    /// Removes `prefix` from link `link`.
    pub fn delete_address(&mut self, link: u32, prefix: IpPrefix) -> Result<()> {
        let msg = address_message(link, prefix);
        self.ack(&RouteNetlinkMessage::DelAddress(msg), 0, || {
            format!("delete address {prefix} from link #{link}")
        })
    }

    /// Addresses of one link, or of all links with `None`; IPv4 and IPv6.
    pub fn list_addresses(&mut self, link: Option<u32>) -> Result<Vec<Address>> {
        let mut msg = AddressMessage::default();
        // With strict checking on, a non-zero index filters in the kernel.
        msg.header.index = link.unwrap_or(0);
        let replies = self.dump(&RouteNetlinkMessage::GetAddress(msg), || match link {
            Some(i) => format!("list addresses of link #{i}"),
            None => "list addresses".to_owned(),
        })?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(msg) => parse_address(msg),
                _ => None,
            })
            .filter(|a| link.is_none_or(|i| a.index == i))
            .collect())
    }
}

fn parse_address(msg: AddressMessage) -> Option<Address> {
    let mut local: Option<IpAddr> = None;
    let mut address: Option<IpAddr> = None;
    let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
    for attr in msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(a),
            AddressAttribute::Address(a) => address = Some(a),
            AddressAttribute::Flags(f) => flags = f,
            _ => {}
        }
    }
    let addr = local.or(address)?;
    Some(Address {
        index: msg.header.index,
        prefix: IpPrefix::new(addr, msg.header.prefix_len)?,
        scope: Scope::from_raw(u8::from(msg.header.scope)),
        permanent: flags.contains(AddressFlags::Permanent),
        nodad: flags.contains(AddressFlags::Nodad),
        tentative: flags.contains(AddressFlags::Tentative),
        dad_failed: flags.contains(AddressFlags::Dadfailed),
    })
}
