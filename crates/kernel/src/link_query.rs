//! Reading links back: one by name or index, or all of them.

use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, ErrorKind, Result};
use crate::link::link_ref_message;
use crate::netns::Netns;
use crate::socket::Netlink;
use crate::types::{check_ifname, LinkRef, MacAddr};

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Link type (`veth`, `bridge`, `macvlan`, ...); `None` for devices
    /// without one (loopback, physical NICs).
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// MAC address, if the link has a 6-byte one.
    pub mac: Option<MacAddr>,
    /// Index of the master this link is enslaved to.
    pub master: Option<u32>,
    /// Index of the link this one sits on (`IFLA_LINK`): a macvlan's
    /// parent, a veth's peer (whose index may be in another namespace).
    pub parent: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`).
    pub lower_up: bool,
    /// For a link whose peer or parent is in another namespace (a veth
    /// end): that namespace's id as seen from this one
    /// (`IFLA_LINK_NETNSID`); compare with [`Netlink::netns_id`].
    pub peer_netns_id: Option<i32>,
    /// Marked as being deleted by [`Netlink::delete_link_in_background`]
    /// (its alias is [`crate::DELETING_LINK_ALIAS`]).
    pub being_deleted: bool,
}

impl Link {
    fn from_message(msg: LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mtu: 0,
            mac: None,
            master: None,
            parent: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
            peer_netns_id: None,
            being_deleted: false,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::Mtu(mtu) => link.mtu = mtu,
                LinkAttribute::Address(bytes) => link.mac = MacAddr::from_slice(&bytes),
                LinkAttribute::Controller(m) if m != 0 => link.master = Some(m),
                LinkAttribute::Link(p) if p != 0 => link.parent = Some(p),
                LinkAttribute::LinkNetNsId(id) if id >= 0 => link.peer_netns_id = Some(id),
                LinkAttribute::IfAlias(alias) => {
                    link.being_deleted = alias == crate::link::DELETING_LINK_ALIAS
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

impl Netlink {
    /// Looks a link up; `Ok(None)` if it does not exist.
    pub fn get_link<'a>(&mut self, link: impl Into<LinkRef<'a>>) -> Result<Option<Link>> {
        let link = link.into();
        let mut msg = link_ref_message(link);
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let action = || format!("get {link}");
        match self.get(&RouteNetlinkMessage::GetLink(msg), action) {
            Ok(RouteNetlinkMessage::NewLink(msg)) => Ok(Some(Link::from_message(msg))),
            Ok(other) => Err(Error::new(
                action(),
                ErrorKind::Protocol(format!(
                    "expected a link, got message type {}",
                    other.message_type()
                )),
            )),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The index of the link named `name` (or having it as an alternative
    /// name); a not-found error if none.
    ///
    /// Asked with the `SIOCGIFINDEX` ioctl on this socket, which the kernel
    /// answers from its name hash in the socket's namespace, the same
    /// lookup an `RTM_GETLINK` by name makes. The netlink request also has
    /// the kernel describe the whole link and this side decode it: for a
    /// bridge that was about a tenth of a millisecond per lookup, which
    /// every connect made twice (the bridge on the host, the new interface
    /// in the sandbox).
    pub fn link_index(&mut self, name: &str) -> Result<u32> {
        let action = || format!("find link {name:?} in {}", self.netns_label());
        let req = self.ask_by_name(name, libc::SIOCGIFINDEX, &action)?;
        // SAFETY: on success the kernel has set the index member.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        u32::try_from(index).map_err(|_| {
            Error::new(
                action(),
                ErrorKind::Protocol(format!("kernel gave index {index}")),
            )
        })
    }

    /// The MAC address of the Ethernet-type link named `name` (a veth, a
    /// bridge, a macvlan), or `None` for another type (loopback, a tunnel);
    /// a not-found error if there is no such link. Asked with the
    /// `SIOCGIFHWADDR` ioctl, for the reason given at [`Netlink::link_index`].
    pub fn link_mac(&mut self, name: &str) -> Result<Option<MacAddr>> {
        let action = || {
            format!(
                "read the MAC address of link {name:?} in {}",
                self.netns_label()
            )
        };
        let req = self.ask_by_name(name, libc::SIOCGIFHWADDR, &action)?;
        // SAFETY: on success the kernel has set the hardware address member.
        let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
        if hw.sa_family != libc::ARPHRD_ETHER {
            return Ok(None);
        }
        let mut mac = [0u8; 6];
        for (to, from) in mac.iter_mut().zip(hw.sa_data) {
            *to = from as u8;
        }
        Ok(Some(MacAddr(mac)))
    }

    /// Sends the `ifreq` ioctl `request` about link `name` on this socket,
    /// which the kernel answers in the socket's namespace; a not-found
    /// error if there is no such link.
    fn ask_by_name(
        &self,
        name: &str,
        request: libc::Ioctl,
        action: &dyn Fn() -> String,
    ) -> Result<libc::ifreq> {
        check_ifname(name).map_err(|why| Error::invalid(action(), why))?;
        // SAFETY: `ifreq` is plain old data, for which zero is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (to, from) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *to = *from as libc::c_char;
        }
        // SAFETY: the fd is this socket's; the kernel reads the
        // NUL-terminated name (at most 15 bytes, checked above, so the
        // last byte stays 0) and writes only into `req`.
        let rc = unsafe { libc::ioctl(self.raw_fd(), request, &mut req) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ENODEV) => Error::new(action(), ErrorKind::NotFound),
                _ => Error::io(action(), err),
            });
        }
        Ok(req)
    }

    /// The id this socket's namespace gives to namespace `ns`, if it has
    /// given it one (it does once a link here has a peer there).
    pub fn netns_id(&mut self, ns: &Netns) -> Result<Option<i32>> {
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(ns.raw_fd() as u32));
        let action = || format!("get the id of namespace {}", ns.label());
        match self.get(&RouteNetlinkMessage::GetNsId(msg), action)? {
            RouteNetlinkMessage::NewNsId(reply) => {
                Ok(reply.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                    _ => None,
                }))
            }
            other => Err(Error::new(
                action(),
                ErrorKind::Protocol(format!(
                    "expected a namespace id, got message type {}",
                    other.message_type()
                )),
            )),
        }
    }

    /// All links in this socket's namespace, ordered by index.
    pub fn list_links(&mut self) -> Result<Vec<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self.dump(&RouteNetlinkMessage::GetLink(msg), || {
            "list links".to_owned()
        })?;
        let mut links: Vec<Link> = replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(msg) => Some(Link::from_message(msg)),
                _ => None,
            })
            .collect();
        links.sort_by_key(|l| l.index);
        Ok(links)
    }
}
