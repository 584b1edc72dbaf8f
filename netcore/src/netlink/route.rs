//! Routes: add a route, look up the route to an address (for the underlay).

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::Netlink;
use crate::error::{Error, Result};

/// A route to add in the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
}

/// The kernel's answer to "how do I reach this address".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    pub oif: u32,
    pub source: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The main-table message for `route`, shared by add and delete.
fn route_msg(route: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = match route.dst {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = route.dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = if route.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    if route.dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route.dst.network().into()));
    }
    if let Some(gw) = route.gateway {
        msg.attributes.push(RouteAttribute::Gateway(gw.into()));
    }
    msg.attributes.push(RouteAttribute::Oif(route.oif));
    msg
}

impl Netlink {
    /// Adds a route; an identical existing route is not an error.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        match self.ack(
            &format!("add route {}", route.dst),
            RouteNetlinkMessage::NewRoute(route_msg(route)),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// Adds a route unless one for the same destination exists; `Ok(false)` when it did (EEXIST),
    /// so a caller reports only what it installed.
    pub fn add_route_new(&mut self, route: &Route) -> Result<bool> {
        match self.ack(
            &format!("add route {}", route.dst),
            RouteNetlinkMessage::NewRoute(route_msg(route)),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.is_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a route; a missing route is not an error.
    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        match self.ack(
            &format!("delete route {}", route.dst),
            RouteNetlinkMessage::DelRoute(route_msg(route)),
            0,
        ) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Asks the kernel which device and source address reach `dst` (like `ip route get`).
    pub fn route_get(&mut self, dst: IpAddr) -> Result<RouteLookup> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match dst {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        msg.attributes.push(RouteAttribute::Destination(dst.into()));
        let what = format!("look up route to {dst}");
        let reply = self.get(&what, RouteNetlinkMessage::GetRoute(msg))?;
        let RouteNetlinkMessage::NewRoute(m) = reply else {
            return Err(Error::Internal(format!("{what}: unexpected reply")));
        };
        let mut out = RouteLookup {
            oif: 0,
            source: None,
            gateway: None,
        };
        for attr in &m.attributes {
            match attr {
                RouteAttribute::Oif(i) => out.oif = *i,
                RouteAttribute::PrefSource(a) => out.source = ip_of(a),
                RouteAttribute::Gateway(a) => out.gateway = ip_of(a),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Lists the main table's routes through one device.
    pub fn routes(&mut self, oif: u32) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            let replies = self.dump("list routes", RouteNetlinkMessage::GetRoute(msg))?;
            for reply in replies {
                let RouteNetlinkMessage::NewRoute(m) = reply else {
                    continue;
                };
                if m.header.table != RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                let mut dst = None;
                let mut gateway = None;
                let mut dev = 0;
                for attr in &m.attributes {
                    match attr {
                        RouteAttribute::Destination(a) => dst = ip_of(a),
                        RouteAttribute::Gateway(a) => gateway = ip_of(a),
                        RouteAttribute::Oif(i) => dev = *i,
                        _ => {}
                    }
                }
                if dev != oif {
                    continue;
                }
                let dst = dst.unwrap_or(match family {
                    AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                    _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                });
                if let Ok(dst) = IpNet::new(dst, m.header.destination_prefix_length) {
                    out.push(Route { dst, gateway, oif });
                }
            }
        }
        Ok(out)
    }
}
