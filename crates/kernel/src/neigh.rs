//! Neighbour (ARP / NDP) entries.

use std::net::IpAddr;

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::addr::address_family;
use crate::error::Result;
use crate::socket::{Netlink, NLM_F_CREATE, NLM_F_REPLACE};
use crate::types::{Family, MacAddr};

/// A neighbour entry as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Index of the link the neighbour is on.
    pub index: u32,
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its MAC address, if resolved.
    pub mac: Option<MacAddr>,
    /// Static entry that never expires (`NUD_PERMANENT`).
    pub permanent: bool,
    /// Confirmed reachable recently (`NUD_REACHABLE`).
    pub reachable: bool,
    /// Resolution failed (`NUD_FAILED`).
    pub failed: bool,
}

fn neighbour_message(link: u32, ip: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = address_family(Family::of(ip));
    msg.header.ifindex = link;
    msg.attributes
        .push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    msg
}

impl Netlink {
    /// Adds (or replaces) a permanent entry `ip -> mac` on link `link`.
    pub fn add_neighbour(&mut self, link: u32, ip: IpAddr, mac: MacAddr) -> Result<()> {
        let mut msg = neighbour_message(link, ip);
        msg.header.state = NeighbourState::Permanent;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
        self.ack(
            &RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            || format!("add neighbour {ip} lladdr {mac} on link #{link}"),
        )
    }

    /// Deletes the entry for `ip` on link `link`.
    pub fn delete_neighbour(&mut self, link: u32, ip: IpAddr) -> Result<()> {
        let msg = neighbour_message(link, ip);
        self.ack(&RouteNetlinkMessage::DelNeighbour(msg), 0, || {
            format!("delete neighbour {ip} on link #{link}")
        })
    }

    /// ARP and NDP entries of one link, or of all links with `None`.
    pub fn list_neighbours(&mut self, link: Option<u32>) -> Result<Vec<Neighbour>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Unspec;
        if let Some(i) = link {
            // With strict checking on, the kernel filters by this attribute.
            msg.attributes.push(NeighbourAttribute::IfIndex(i));
        }
        let replies = self.dump(&RouteNetlinkMessage::GetNeighbour(msg), || match link {
            Some(i) => format!("list neighbours of link #{i}"),
            None => "list neighbours".to_owned(),
        })?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(msg) => parse_neighbour(msg),
                _ => None,
            })
            .filter(|n| link.is_none_or(|i| n.index == i))
            .collect())
    }
}

fn parse_neighbour(msg: NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut mac = None;
    for attr in msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => ip = Some(IpAddr::V6(a)),
            NeighbourAttribute::LinkLayerAddress(bytes) => mac = MacAddr::from_slice(&bytes),
            _ => {}
        }
    }
    let state = msg.header.state;
    Some(Neighbour {
        index: msg.header.ifindex,
        ip: ip?,
        mac,
        permanent: state == NeighbourState::Permanent,
        reachable: state == NeighbourState::Reachable,
        failed: state == NeighbourState::Failed,
    })
}
