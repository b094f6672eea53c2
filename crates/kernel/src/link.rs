//! Creating, changing and deleting links (network interfaces).
//!
//! Every `create_*` is one `RTM_NEWLINK` with `NLM_F_CREATE | NLM_F_EXCL`
//! that also sets MTU, MAC, master, namespace and up-state, so a new link
//! is complete in one round trip. A veth's peer is created directly in its
//! namespace (the peer's own `IFLA_NET_NS_FD`), never created then moved.

use std::net::IpAddr;

use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoBridgePort, InfoData, InfoIpVlan,
    InfoKind, InfoMacVlan, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan, IpVlanMode,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::feature;
use crate::netns::Netns;
use crate::socket::{Netlink, NLM_F_CREATE, NLM_F_EXCL};
use crate::types::{check_ifname, LinkRef, MacAddr};

/// The common settings of a link to create.
///
/// ```no_run
/// # use netloom_kernel::{LinkSpec, Netns};
/// # let sandbox = Netns::open_named("sb1").unwrap();
/// let host_side = LinkSpec::new("nl-ab12").mtu(1500).master(7).up();
/// let sandbox_side = LinkSpec::new("eth0").netns(&sandbox);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LinkSpec<'a> {
    /// Interface name (at most 15 bytes).
    pub name: &'a str,
    /// MTU; the kernel's default for the link type when `None`.
    pub mtu: Option<u32>,
    /// MAC address; random when `None`.
    pub mac: Option<MacAddr>,
    /// Index of the master (e.g. a bridge) to enslave the link to.
    pub master: Option<u32>,
    /// Bring the link up as it is created.
    pub up: bool,
    /// Create the link in this namespace instead of the socket's.
    pub netns: Option<&'a Netns>,
}

impl<'a> LinkSpec<'a> {
    /// A link named `name` with every setting at its default.
    pub fn new(name: &'a str) -> Self {
        LinkSpec {
            name,
            mtu: None,
            mac: None,
            master: None,
            up: false,
            netns: None,
        }
    }

    /// Sets the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Sets the MAC address.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Enslaves the new link to master `index`.
    pub fn master(mut self, index: u32) -> Self {
        self.master = Some(index);
        self
    }

    /// Brings the link up as it is created.
    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }

    /// Creates the link inside `ns`.
    pub fn netns(mut self, ns: &'a Netns) -> Self {
        self.netns = Some(ns);
        self
    }
}

/// How a macvlan forwards between siblings on one parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    /// Siblings talk directly (`bridge`).
    Bridge,
    /// Siblings cannot talk at all (`private`).
    Private,
    /// Sibling traffic goes out to the external switch (`vepa`).
    Vepa,
    /// One macvlan takes over the parent (`passthru`).
    Passthru,
}

/// The layer an ipvlan works at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvlanMode {
    /// Layer 2: siblings share the parent's MAC, switching by IP.
    L2,
    /// Layer 3: routed, no broadcast or multicast.
    L3,
    /// Layer 3 with netfilter on the ingress path (`l3s`).
    L3s,
}

/// Settings of a VXLAN link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanSpec {
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// Unicast remote endpoint (or multicast group) of the tunnel.
    pub remote: Option<IpAddr>,
    /// Local source address of the tunnel.
    pub local: Option<IpAddr>,
    /// UDP destination port; 4789 is the IANA port.
    pub port: u16,
    /// Index of the underlay device.
    pub underlay: Option<u32>,
    /// Learn remote MACs from received packets.
    pub learning: bool,
}

impl VxlanSpec {
    /// VNI `vni` on UDP port 4789, learning on, no fixed endpoints.
    pub fn new(vni: u32) -> Self {
        VxlanSpec {
            vni,
            remote: None,
            local: None,
            port: 4789,
            underlay: None,
            learning: true,
        }
    }
}

impl Netlink {
    /// Creates a bridge that does not snoop multicast: it floods every
    /// multicast frame to every port, as a plain switch does.
    ///
    /// Snooping buys nothing on a bridge no multicast router or querier
    /// sits behind: memberships are only learnt from the reports a
    /// sandbox sends when it joins, never refreshed, and forgotten after
    /// the membership interval, when the group is flooded again. Its cost
    /// grows with the bridge: each time a port is added, removed, or goes
    /// up or down, the kernel re-arms two query timers on every port, so
    /// with a thousand ports connecting one sandbox took about half a
    /// millisecond more, and the whole network's making grew with the
    /// square of its size.
    pub fn create_bridge(&mut self, spec: &LinkSpec<'_>) -> Result<()> {
        let data = InfoData::Bridge(vec![InfoBridge::MulticastSnooping(false)]);
        self.create_link(spec, InfoKind::Bridge, Some(data), None, &String::new)
    }

    /// Creates a veth pair: `spec` on this socket's side (or in
    /// `spec.netns`), `peer` created directly in `peer.netns`.
    ///
    /// The peer cannot be given a master or be brought up here: the kernel
    /// configures the peer before the pair is joined, and opening a veth
    /// without its other end fails (`ENOTCONN`). Bring it up (and enslave
    /// it) with a socket in the peer's namespace, where its address is
    /// added anyway.
    pub fn create_veth(&mut self, spec: &LinkSpec<'_>, peer: &LinkSpec<'_>) -> Result<()> {
        let peer_desc = || match peer.netns {
            Some(ns) => format!(" with peer {:?} in {}", peer.name, ns.label()),
            None => format!(" with peer {:?}", peer.name),
        };
        let action = || format!("create veth {:?}{}", spec.name, peer_desc());
        check_ifname(peer.name).map_err(|why| Error::invalid(action(), why))?;
        if peer.master.is_some() || peer.up {
            return Err(Error::invalid(
                action(),
                "a veth peer cannot be enslaved or brought up as it is created; \
                 do it with a socket in the peer's namespace",
            ));
        }
        let mut peer_msg = LinkMessage::default();
        apply_spec(&mut peer_msg, peer);
        peer_msg.attributes.extend(one_queue_each_way());
        let data = InfoData::Veth(InfoVeth::Peer(peer_msg));
        self.create_link(spec, InfoKind::Veth, Some(data), None, &peer_desc)
    }

    /// Creates a macvlan on parent link `parent` (an index in this socket's
    /// namespace; the new link may go to `spec.netns`).
    pub fn create_macvlan(
        &mut self,
        spec: &LinkSpec<'_>,
        parent: u32,
        mode: MacvlanMode,
    ) -> Result<()> {
        let mode = match mode {
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
        };
        let data = InfoData::MacVlan(vec![InfoMacVlan::Mode(mode)]);
        self.create_link(
            spec,
            InfoKind::MacVlan,
            Some(data),
            Some(parent),
            &String::new,
        )
    }

    /// Creates an ipvlan on parent link `parent`. On a kernel without
    /// ipvlan this fails with [`ErrorKind::MissingFeature`](crate::ErrorKind).
    pub fn create_ipvlan(
        &mut self,
        spec: &LinkSpec<'_>,
        parent: u32,
        mode: IpvlanMode,
    ) -> Result<()> {
        let mode = match mode {
            IpvlanMode::L2 => IpVlanMode::L2,
            IpvlanMode::L3 => IpVlanMode::L3,
            IpvlanMode::L3s => IpVlanMode::L3S,
        };
        let data = InfoData::IpVlan(vec![InfoIpVlan::Mode(mode)]);
        self.create_link(
            spec,
            InfoKind::IpVlan,
            Some(data),
            Some(parent),
            &String::new,
        )
    }

    /// Creates a VXLAN link.
    pub fn create_vxlan(&mut self, spec: &LinkSpec<'_>, vxlan: &VxlanSpec) -> Result<()> {
        let mut data = vec![
            InfoVxlan::Id(vxlan.vni),
            InfoVxlan::Port(vxlan.port),
            InfoVxlan::Learning(vxlan.learning),
        ];
        match vxlan.remote {
            Some(IpAddr::V4(a)) => data.push(InfoVxlan::Group(a)),
            Some(IpAddr::V6(a)) => data.push(InfoVxlan::Group6(a)),
            None => {}
        }
        match vxlan.local {
            Some(IpAddr::V4(a)) => data.push(InfoVxlan::Local(a)),
            Some(IpAddr::V6(a)) => data.push(InfoVxlan::Local6(a)),
            None => {}
        }
        if let Some(dev) = vxlan.underlay {
            data.push(InfoVxlan::Link(dev));
        }
        let vni = vxlan.vni;
        let detail = move || format!(" (vni {vni})");
        self.create_link(
            spec,
            InfoKind::Vxlan,
            Some(InfoData::Vxlan(data)),
            None,
            &detail,
        )
    }

    /// Sends one `RTM_NEWLINK` for a link of type `kind`; `parent` becomes
    /// `IFLA_LINK`; `detail` adds to the error's description.
    fn create_link(
        &mut self,
        spec: &LinkSpec<'_>,
        kind: InfoKind,
        data: Option<InfoData>,
        parent: Option<u32>,
        detail: &dyn Fn() -> String,
    ) -> Result<()> {
        // Known kinds clone without allocating; the name is only formatted on error.
        let kind_name = kind.clone();
        let action = || {
            let place = spec
                .netns
                .map(|ns| format!(" in {}", ns.label()))
                .unwrap_or_default();
            let on = parent
                .map(|p| format!(" on parent #{p}"))
                .unwrap_or_default();
            format!("create {kind_name} {:?}{place}{on}{}", spec.name, detail())
        };
        check_ifname(spec.name).map_err(|why| Error::invalid(action(), why))?;
        let mut msg = LinkMessage::default();
        apply_spec(&mut msg, spec);
        if let Some(master) = spec.master {
            msg.attributes.push(LinkAttribute::Controller(master));
        }
        if let Some(parent) = parent {
            msg.attributes.push(LinkAttribute::Link(parent));
        }
        if matches!(kind, InfoKind::Veth) {
            msg.attributes.extend(one_queue_each_way());
        }
        let mut info = vec![LinkInfo::Kind(kind)];
        info.extend(data.map(LinkInfo::Data));
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        let result = self.ack(
            &RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            action,
        );
        match result {
            Err(err) if is_unknown_kind(&err) => {
                feature::remember_link_kind(&kind_name.to_string(), false);
                Err(Error::missing_feature(action(), kind_name.to_string()))
            }
            other => other,
        }
    }

    /// Brings a link up or down.
    pub fn set_up<'a>(&mut self, link: impl Into<LinkRef<'a>>, up: bool) -> Result<()> {
        let link = link.into();
        let mut msg = link_ref_message(link);
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        let state = if up { "up" } else { "down" };
        self.set_link(msg, || format!("set {link} {state}"))
    }

    /// Brings a link up without an IPv6 link-local address: it then sends
    /// no address probe, router solicitation or listener report for one.
    /// Addresses added to it explicitly work as usual. Two messages:
    /// address generation is turned off first, as the kernel applies a
    /// message's flags before its per-family settings, and some links (a
    /// bridge) get their link-local address the moment they come up.
    pub fn set_up_without_link_local<'a>(&mut self, link: impl Into<LinkRef<'a>>) -> Result<()> {
        let link = link.into();
        let mut msg = link_ref_message(link);
        msg.attributes.push(no_link_local());
        self.set_link(msg, || {
            format!("turn IPv6 address generation off on {link}")
        })?;
        self.set_up(link, true)
    }

    /// Sets a link's MTU.
    pub fn set_mtu<'a>(&mut self, link: impl Into<LinkRef<'a>>, mtu: u32) -> Result<()> {
        let link = link.into();
        let mut msg = link_ref_message(link);
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(msg, || format!("set mtu of {link} to {mtu}"))
    }

    /// Sets a link's MAC address.
    pub fn set_mac<'a>(&mut self, link: impl Into<LinkRef<'a>>, mac: MacAddr) -> Result<()> {
        let link = link.into();
        let mut msg = link_ref_message(link);
        msg.attributes
            .push(LinkAttribute::Address(mac.octets().to_vec()));
        self.set_link(msg, || format!("set mac of {link} to {mac}"))
    }

    /// Enslaves a link to master `master` (an index), or frees it with `None`.
    pub fn set_master<'a>(
        &mut self,
        link: impl Into<LinkRef<'a>>,
        master: Option<u32>,
    ) -> Result<()> {
        let link = link.into();
        let mut msg = link_ref_message(link);
        msg.attributes
            .push(LinkAttribute::Controller(master.unwrap_or(0)));
        self.set_link(msg, || match master {
            Some(m) => format!("set master of {link} to #{m}"),
            None => format!("release {link} from its master"),
        })
    }

    /// Makes `link` a port of bridge `master` that configures no IPv6 of
    /// its own: it gets no link-local address, so it never sends an
    /// address probe or a multicast listener report. A port only carries
    /// frames. Call it while the link is down: the kernel gives a link its
    /// link-local address when it comes up.
    pub fn set_master_without_ipv6<'a>(
        &mut self,
        link: impl Into<LinkRef<'a>>,
        master: u32,
    ) -> Result<()> {
        let link = link.into();
        let mut msg = link_ref_message(link);
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(no_link_local());
        self.set_link(msg, || {
            format!("set master of {link} to #{master}, without IPv6 addresses of its own")
        })
    }

    /// Turns hairpin mode of a bridge port on or off and brings the port
    /// up, in one message. With hairpin mode on, the bridge may send a
    /// frame back out the port it came in on (needed when a sandbox
    /// reaches its own network through a DNAT on the host).
    pub fn set_hairpin_and_up<'a>(&mut self, link: impl Into<LinkRef<'a>>, on: bool) -> Result<()> {
        let link = link.into();
        let mut msg = hairpin_message(link, on);
        msg.header.change_mask = LinkFlags::Up;
        msg.header.flags = LinkFlags::Up;
        let state = if on { "on" } else { "off" };
        self.set_link(msg, || {
            format!("set hairpin mode of bridge port {link} {state} and bring it up")
        })
    }

    /// Moves a link into another namespace.
    pub fn set_netns<'a>(&mut self, link: impl Into<LinkRef<'a>>, ns: &Netns) -> Result<()> {
        let link = link.into();
        let mut msg = link_ref_message(link);
        msg.attributes.push(LinkAttribute::NetNsFd(ns.raw_fd()));
        self.set_link(msg, || format!("move {link} to {}", ns.label()))
    }

    /// Deletes a link (for a veth, both ends go).
    pub fn delete_link<'a>(&mut self, link: impl Into<LinkRef<'a>>) -> Result<()> {
        let link = link.into();
        let msg = link_ref_message(link);
        self.ack(&RouteNetlinkMessage::DelLink(msg), 0, || {
            format!("delete {link}")
        })
    }

    /// Retires a link that is about to go with a namespace being released:
    /// brings it down (the kernel then drops its routes and IPv6
    /// addresses) and renames it [`RETIRED_LINK_PREFIX`] + its index, so
    /// its name is free again at once. Returns the new name. The kernel
    /// reaps the link when it reaps the namespace holding its other end;
    /// a release is asynchronous, and a deletion would wait for it.
    pub fn retire_link<'a>(&mut self, link: impl Into<LinkRef<'a>>) -> Result<String> {
        let link = link.into();
        let index = match link {
            LinkRef::Index(index) => index,
            LinkRef::Name(name) => self.link_index(name)?,
        };
        self.set_up(index, false)?;
        let name = format!("{RETIRED_LINK_PREFIX}{index}");
        let mut msg = link_ref_message(LinkRef::Index(index));
        msg.attributes.push(LinkAttribute::IfName(name.clone()));
        self.set_link(msg, || format!("rename {link} to {name}"))?;
        Ok(name)
    }

    /// Deletes a link without waiting for the kernel to finish.
    ///
    /// Deleting a link blocks its caller for 20–30 ms while the kernel
    /// waits for the link's last users to let go. This takes the link out
    /// of service at once instead, and sends the deletion from a detached
    /// process forked for nothing else (no program is executed), which
    /// waits in the kernel in this process's stead; if no such process can
    /// be made, the link is deleted here.
    ///
    /// Before that, for a veth whose other end's namespace `peer` is a
    /// socket in, that end is retired ([`Netlink::retire_link`]: down,
    /// renamed [`RETIRED_LINK_PREFIX`] + its index), so its name is free
    /// for a new link on return and the pair carries no more traffic. The
    /// link itself keeps its name (a rename costs an RCU grace period,
    /// which on some machines takes milliseconds) and gets the alias
    /// [`DELETING_LINK_ALIAS`], which tells it is on its way out
    /// ([`crate::Link::being_deleted`]), and the group
    /// [`DELETING_LINK_GROUP`]: the deletion sent is of that whole group,
    /// so links marked meanwhile go in the same one.
    ///
    /// Returns `Ok(false)` if there is no such link.
    pub fn delete_link_in_background<'a>(
        &mut self,
        link: impl Into<LinkRef<'a>>,
        peer: Option<&mut Netlink>,
    ) -> Result<bool> {
        let link = link.into();
        let Some(found) = self.get_link(link)? else {
            return Ok(false);
        };
        if let (Some("veth"), Some(index), Some(peer)) = (
            found.kind.as_deref(),
            found.parent.filter(|&p| p != 0),
            peer,
        ) {
            match peer.retire_link(index) {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        // A link of a kind (made through netlink, as every netloom link
        // is) can go with its group; the kernel refuses a whole group's
        // deletion if one link in it is a device of no kind.
        let by_group = found.kind.is_some();
        let mut msg = link_ref_message(LinkRef::Index(found.index));
        msg.attributes
            .push(LinkAttribute::IfAlias(DELETING_LINK_ALIAS.to_owned()));
        if by_group {
            msg.attributes
                .push(LinkAttribute::Group(DELETING_LINK_GROUP));
        }
        match self.set_link(msg, || format!("mark {link} as being deleted")) {
            Err(e) if e.is_not_found() => return Ok(false),
            other => other?,
        }
        // Every link of the namespace marked so far goes in one deletion:
        // the kernel's waits (a grace period, then the last users letting
        // go) are paid once for all of them, where one deletion each would
        // pay them every time and fall behind a burst of disconnects. A
        // deletion that finds the group already gone does nothing.
        let del = if by_group {
            let mut group = LinkMessage::default();
            group
                .attributes
                .push(LinkAttribute::Group(DELETING_LINK_GROUP));
            group
        } else {
            link_ref_message(LinkRef::Index(found.index))
        };
        let request = Netlink::unacknowledged_request(&RouteNetlinkMessage::DelLink(del));
        if !crate::release::send_in_background(self.raw_fd(), &request) {
            match self.delete_link(found.index) {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        Ok(true)
    }

    fn set_link(&mut self, msg: LinkMessage, action: impl Fn() -> String) -> Result<()> {
        self.ack(&RouteNetlinkMessage::SetLink(msg), 0, action)
    }
}

/// Names of retired links start with this (see [`Netlink::retire_link`]).
pub const RETIRED_LINK_PREFIX: &str = "nlx";

/// The alias of a link whose deletion is under way
/// (see [`Netlink::delete_link_in_background`]).
pub const DELETING_LINK_ALIAS: &str = "netloom: being deleted";

/// The link group of links whose deletion is under way (see
/// [`Netlink::delete_link_in_background`]), deleted together: a group
/// number far from the small ones people name in `/etc/iproute2/group`.
/// Any link in it is deleted with them.
pub const DELETING_LINK_GROUP: u32 = 0x6e6c_6465;

/// One transmit and one receive queue, asked for as a veth end is made.
///
/// Without them a veth gets a queue per possible CPU, then has its queues
/// in use cut to one each way (what it uses either way) once registered,
/// and that waits for an RCU grace period while holding the RTNL lock:
/// every other netlink request on the machine waits too, and with many
/// made at once the CPUs stand idle.
fn one_queue_each_way() -> [LinkAttribute; 2] {
    [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)]
}

/// IPv6 address generation off: the link gets no link-local address when
/// it comes up.
fn no_link_local() -> LinkAttribute {
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
        In6AddrGenMode::None,
    )])])
}

fn hairpin_message(link: LinkRef<'_>, on: bool) -> LinkMessage {
    let mut msg = link_ref_message(link);
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            on,
        )])),
    ]));
    msg
}

/// A link message addressing `link` by index or by name.
pub(crate) fn link_ref_message(link: LinkRef<'_>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    match link {
        LinkRef::Index(i) => msg.header.index = i,
        LinkRef::Name(n) => msg.attributes.push(LinkAttribute::IfName(n.to_owned())),
    }
    msg
}

/// Writes name, MTU, MAC, namespace and up-state of `spec` into `msg`.
fn apply_spec(msg: &mut LinkMessage, spec: &LinkSpec<'_>) {
    if spec.up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
    msg.attributes
        .push(LinkAttribute::IfName(spec.name.to_owned()));
    if let Some(mtu) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = spec.mac {
        msg.attributes
            .push(LinkAttribute::Address(mac.octets().to_vec()));
    }
    if let Some(ns) = spec.netns {
        msg.attributes.push(LinkAttribute::NetNsFd(ns.raw_fd()));
    }
}

/// The kernel's answer to a link type it does not have: `EOPNOTSUPP`
/// with "Unknown device type" (or no message on old kernels).
pub(crate) fn is_unknown_kind(err: &Error) -> bool {
    match err.kind() {
        crate::ErrorKind::Os { errno, detail } => {
            *errno == libc::EOPNOTSUPP
                && detail
                    .as_deref()
                    .is_none_or(|d| d.contains("Unknown device type"))
        }
        _ => false,
    }
}
