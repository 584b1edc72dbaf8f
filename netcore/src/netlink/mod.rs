//! Kernel networking through rtnetlink (`netlink-packet-route`); no `ip` commands.

mod addr;
mod fdb;
mod link;
mod neigh;
mod route;
mod socket;
pub mod tap;

pub use addr::Address;
pub use fdb::FdbEntry;
#[cfg(any(test, feature = "fake"))]
pub(crate) use link::info_data;
pub use link::{
    kind_name, new_link_message, GeneveSpec, GreSpec, Link, LinkChange, LinkKind, NewLink,
    VethPeer, VxlanSpec, GENEVE_PORT, VXLAN_PORT,
};
pub use neigh::{Neighbour, NeighbourState};
pub use netlink_packet_route::link::InfoData;
pub use route::{Route, RouteLookup};
pub use socket::Netlink;

/// Turns IPv6 off on a link of this namespace (`net.ipv6.conf.<name>.disable_ipv6`).
///
/// Host-side bridge ports are pure L2: without this each of them gets link-local addresses and
/// routes (slowing every later link change as ports accumulate) and the node itself would speak
/// DAD and MLD inside tenant networks. A kernel without IPv6 has nothing to turn off.
pub fn disable_ipv6(name: &str) -> crate::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    match std::fs::write(&path, b"1") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::Error::Io {
            op: format!("write {path}"),
            source: e,
        }),
    }
}
