//! Bridge forwarding database entries, e.g. a VXLAN device's flood list (`00:00:00:00:00:00 dst IP`).

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::Netlink;
use crate::error::Result;

/// One FDB entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub index: u32,
    pub mac: [u8; 6],
    pub dst: Option<IpAddr>,
}

fn fdb_msg(index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    if let Some(ip) = dst {
        let addr = match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        };
        msg.attributes.push(NeighbourAttribute::Destination(addr));
    }
    msg
}

fn proxy_msg(index: u32, ip: Ipv4Addr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Proxy;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    msg
}

impl Netlink {
    /// Appends an FDB entry on a device (`bridge fdb append MAC dev D dst IP self`).
    pub fn fdb_append(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        match self.ack(
            "append fdb entry",
            RouteNetlinkMessage::NewNeighbour(fdb_msg(index, mac, dst)),
            NLM_F_CREATE | NLM_F_APPEND,
        ) {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// Removes one FDB entry; a missing entry is not an error.
    pub fn fdb_delete(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        match self.ack(
            "delete fdb entry",
            RouteNetlinkMessage::DelNeighbour(fdb_msg(index, mac, dst)),
            0,
        ) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Makes this namespace answer ARP for `ip` on the device `index` (`ip neigh add proxy IP
    /// dev D`); answered only while forwarding is on and `ip` is routed through another device.
    pub fn add_proxy_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<()> {
        match self.ack(
            &format!("add proxy neighbour {ip}"),
            RouteNetlinkMessage::NewNeighbour(proxy_msg(index, ip)),
            NLM_F_CREATE,
        ) {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// Removes what [`Netlink::add_proxy_neighbour`] added; a missing entry is not an error.
    pub fn delete_proxy_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<()> {
        match self.ack(
            &format!("delete proxy neighbour {ip}"),
            RouteNetlinkMessage::DelNeighbour(proxy_msg(index, ip)),
            0,
        ) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Lists the FDB entries of one device (its own entries and those of its bridge port).
    pub fn fdb_entries(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let replies = self.dump("list fdb", RouteNetlinkMessage::GetNeighbour(req))?;
        let mut out = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewNeighbour(m) = reply else {
                continue;
            };
            if m.header.ifindex != index {
                continue;
            }
            let mut mac = None;
            let mut dst = None;
            for attr in &m.attributes {
                match attr {
                    NeighbourAttribute::LinkLayerAddress(a) => {
                        mac = <[u8; 6]>::try_from(a.as_slice()).ok()
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        dst = Some(IpAddr::V4(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        dst = Some(IpAddr::V6(*a))
                    }
                    // In the bridge family the parser cannot tell the address family; the
                    // length does.
                    NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                        dst = match bytes.len() {
                            4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(bytes.as_slice())
                                .ok()
                                .map(IpAddr::from),
                            _ => None,
                        }
                    }
                    _ => {}
                }
            }
            if let Some(mac) = mac {
                out.push(FdbEntry { index, mac, dst });
            }
        }
        Ok(out)
    }
}
