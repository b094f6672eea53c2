//! Routes in the main table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::addr::address_family;
use crate::error::{Error, Result};
use crate::socket::{Netlink, NLM_F_CREATE, NLM_F_EXCL};
use crate::types::{Family, IpPrefix, Scope};

/// The kernel's main routing table (`RT_TABLE_MAIN`).
pub const MAIN_TABLE: u32 = 254;

/// A unicast route, to add or delete, or as read back.
///
/// ```
/// use netloom_kernel::{IpPrefix, Route};
/// let default = Route::default_via("10.1.0.1".parse().unwrap());
/// let subnet = Route::on_link("10.1.0.0/24".parse().unwrap(), 3);
/// let other = Route::via("10.2.0.0/16".parse().unwrap(), "10.1.0.254".parse().unwrap()).metric(100);
/// assert_eq!(default.dst, IpPrefix::default_v4());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination; `0.0.0.0/0` or `::/0` for a default route.
    pub dst: IpPrefix,
    /// Next hop; `None` for a route straight onto a link.
    pub gateway: Option<IpAddr>,
    /// Output link index.
    pub dev: Option<u32>,
    /// Metric (priority); lower wins.
    pub metric: Option<u32>,
    /// Preferred source address (`src`).
    pub src: Option<IpAddr>,
    /// Scope: `Link` for a route without gateway, `Universe` otherwise, when
    /// added; as reported when read back.
    pub scope: Scope,
    /// Routing table; [`MAIN_TABLE`] for routes added here.
    pub table: u32,
    /// Who installed it (`RTPROT_*`: 2 kernel, 3 boot, 4 static, ...).
    pub protocol: u8,
}

/// `RTPROT_STATIC`: routes netloom adds.
const PROTOCOL_STATIC: u8 = 4;

impl Route {
    fn new(dst: IpPrefix, gateway: Option<IpAddr>, dev: Option<u32>) -> Route {
        Route {
            dst: dst.network(),
            gateway,
            dev,
            metric: None,
            src: None,
            scope: if gateway.is_some() {
                Scope::Universe
            } else {
                Scope::Link
            },
            table: MAIN_TABLE,
            protocol: PROTOCOL_STATIC,
        }
    }

    /// A default route via `gateway` (`default via GW`).
    pub fn default_via(gateway: IpAddr) -> Route {
        let dst = match gateway {
            IpAddr::V4(_) => IpPrefix::default_v4(),
            IpAddr::V6(_) => IpPrefix::default_v6(),
        };
        Route::new(dst, Some(gateway), None)
    }

    /// A route to `dst` via `gateway` (`DST via GW`).
    pub fn via(dst: IpPrefix, gateway: IpAddr) -> Route {
        Route::new(dst, Some(gateway), None)
    }

    /// A route to `dst` straight onto link `dev` (`DST dev DEV scope link`).
    pub fn on_link(dst: IpPrefix, dev: u32) -> Route {
        Route::new(dst, None, Some(dev))
    }

    /// Sets the output link (needed with an IPv6 link-local gateway).
    pub fn dev(mut self, dev: u32) -> Route {
        self.dev = Some(dev);
        self
    }

    /// Sets the metric.
    pub fn metric(mut self, metric: u32) -> Route {
        self.metric = Some(metric);
        self
    }

    /// Sets the preferred source address.
    pub fn src(mut self, src: IpAddr) -> Route {
        self.src = Some(src);
        self
    }

    /// Whether this is a default route.
    pub fn is_default(&self) -> bool {
        self.dst.prefix_len() == 0
    }

    fn describe(&self) -> String {
        let mut out = if self.is_default() {
            "default".to_owned()
        } else {
            self.dst.to_string()
        };
        if let Some(gw) = self.gateway {
            out.push_str(&format!(" via {gw}"));
        }
        if let Some(dev) = self.dev {
            out.push_str(&format!(" dev #{dev}"));
        }
        if let Some(metric) = self.metric {
            out.push_str(&format!(" metric {metric}"));
        }
        out
    }

    fn check(&self) -> std::result::Result<(), String> {
        let family = self.dst.family();
        for (what, addr) in [("gateway", self.gateway), ("source", self.src)] {
            if let Some(addr) = addr {
                if Family::of(addr) != family {
                    return Err(format!(
                        "{what} {addr} is {} but the destination is {family}",
                        Family::of(addr)
                    ));
                }
            }
        }
        if self.gateway.is_none() && self.dev.is_none() {
            return Err("a route needs a gateway or an output link".into());
        }
        Ok(())
    }

    fn to_message(self, for_delete: bool) -> RouteMessage {
        let mut msg = RouteMessage::default();
        let header = &mut msg.header;
        header.address_family = address_family(self.dst.family());
        header.destination_prefix_length = self.dst.prefix_len();
        header.table = u8::try_from(self.table).unwrap_or(0);
        if for_delete {
            // Match any scope, protocol and type, as `ip route del` does.
            header.scope = RouteScope::NoWhere;
        } else {
            header.scope = match self.scope {
                Scope::Link => RouteScope::Link,
                Scope::Host => RouteScope::Host,
                Scope::Site => RouteScope::Site,
                _ => RouteScope::Universe,
            };
            header.protocol = RouteProtocol::from(self.protocol);
            header.kind = RouteType::Unicast;
        }
        if self.table > 255 {
            msg.attributes.push(RouteAttribute::Table(self.table));
        }
        if !self.is_default() {
            msg.attributes
                .push(RouteAttribute::Destination(route_address(self.dst.addr())));
        }
        if let Some(gw) = self.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(route_address(gw)));
        }
        if let Some(dev) = self.dev {
            msg.attributes.push(RouteAttribute::Oif(dev));
        }
        if let Some(metric) = self.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        if let Some(src) = self.src {
            msg.attributes
                .push(RouteAttribute::PrefSource(route_address(src)));
        }
        msg
    }
}

fn route_address(addr: IpAddr) -> RouteAddress {
    match addr {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn ip_of(addr: RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(a)),
        _ => None,
    }
}

impl Netlink {
    /// Adds a route. Fails with `EEXIST` if an identical one exists.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let action = || format!("add route {}", route.describe());
        route.check().map_err(|why| Error::invalid(action(), why))?;
        let msg = route.to_message(false);
        self.ack(
            &RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            action,
        )
    }

    /// [`Netlink::add_route`], where a route already there for the same
    /// destination and metric (`EEXIST`) counts as done and is left as it
    /// is; inside [`Netlink::batch`] too.
    pub fn add_route_unless_one_exists(&mut self, route: &Route) -> Result<()> {
        self.exists_is_done = self.batched.is_some();
        match self.add_route(route) {
            Err(e) if e.is_already_exists() => Ok(()),
            done => {
                self.exists_is_done = false;
                done
            }
        }
    }

    /// Deletes a route; destination, gateway, link and metric are matched
    /// when given.
    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        let msg = route.to_message(true);
        self.ack(&RouteNetlinkMessage::DelRoute(msg), 0, || {
            format!("delete route {}", route.describe())
        })
    }

    /// Unicast routes of one family in the main table.
    pub fn list_routes(&mut self, family: Family) -> Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = address_family(family);
        // With strict checking on, the kernel filters by table.
        msg.header.table = MAIN_TABLE as u8;
        let replies = self.dump(&RouteNetlinkMessage::GetRoute(msg), || {
            format!("list {family} routes")
        })?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(msg) => parse_route(msg, family),
                _ => None,
            })
            .filter(|r| r.table == MAIN_TABLE)
            .collect())
    }
}

fn parse_route(msg: RouteMessage, family: Family) -> Option<Route> {
    if msg.header.kind != RouteType::Unicast {
        return None;
    }
    let unspecified = match family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let mut route = Route {
        dst: IpPrefix::new(unspecified, 0)?,
        gateway: None,
        dev: None,
        metric: None,
        src: None,
        scope: Scope::from_raw(u8::from(msg.header.scope)),
        table: u32::from(msg.header.table),
        protocol: u8::from(msg.header.protocol),
    };
    let dst_len = msg.header.destination_prefix_length;
    for attr in msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => route.dst = IpPrefix::new(ip_of(a)?, dst_len)?,
            RouteAttribute::Gateway(a) => route.gateway = ip_of(a),
            RouteAttribute::Oif(i) => route.dev = Some(i),
            RouteAttribute::Priority(p) => route.metric = Some(p),
            RouteAttribute::PrefSource(a) => route.src = ip_of(a),
            RouteAttribute::Table(t) => route.table = t,
            _ => {}
        }
    }
    Some(route)
}
