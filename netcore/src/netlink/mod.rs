//! Kernel networking through rtnetlink (`netlink-packet-route`); no `ip` commands.

mod addr;
mod fdb;
mod link;
mod route;
mod socket;
pub mod tap;

pub use addr::Address;
pub use fdb::FdbEntry;
pub use link::{
    GeneveSpec, GreSpec, Link, LinkKind, NewLink, VethPeer, VxlanSpec, GENEVE_PORT, VXLAN_PORT,
};
pub use netlink_packet_route::link::InfoData;
pub use route::{Route, RouteLookup};
pub use socket::Netlink;
