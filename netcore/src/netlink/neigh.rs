//! The IPv4 neighbour (ARP) table of one device, read back: what a workload is still waiting to
//! resolve (see [`crate::arp_nudge`]).

use std::net::Ipv4Addr;

use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

pub use netlink_packet_route::neighbour::NeighbourState;

use super::Netlink;
use crate::error::Result;

/// One ARP entry as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub state: NeighbourState,
    pub mac: Option<[u8; 6]>,
}

impl Neighbour {
    /// True while the kernel has no address for it: INCOMPLETE (asking) or FAILED (gave up).
    pub fn unresolved(&self) -> bool {
        matches!(
            self.state,
            NeighbourState::Incomplete | NeighbourState::Failed
        )
    }
}

fn parse(m: &NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut mac = None;
    for attr in &m.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(*a),
            NeighbourAttribute::LinkLayerAddress(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            _ => {}
        }
    }
    Some(Neighbour {
        ip: ip?,
        state: m.header.state,
        mac,
    })
}

impl Netlink {
    /// The IPv4 neighbour entries of the device `index` (`ip -4 neigh show dev D`).
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self.dump("list neighbours", RouteNetlinkMessage::GetNeighbour(req))?;
        Ok(replies
            .iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewNeighbour(m) if m.header.ifindex == index => parse(m),
                _ => None,
            })
            .collect())
    }
}
