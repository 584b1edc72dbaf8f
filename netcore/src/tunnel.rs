//! Tunnel kinds between a compute node and its tenant's CNCI, one driver per kind.
//!
//! The kind itself is [`ciao_types::TunnelKind`], shared with the SSNTP payloads. What differs
//! between kinds — the devices on each side, how the hub reaches many nodes, how ids collide —
//! lives in one [`TunnelDriver`] per kind, found with [`driver`], so neither the compute node
//! nor the CNCI hub matches on the kind.

use std::net::Ipv4Addr;

pub use ciao_types::{ParseTunnelKindError, TunnelKind};
use netlink_packet_route::link::{InfoData, InfoGeneve, InfoGre, InfoVxlan};

use crate::netlink::{GeneveSpec, GreSpec, Link, LinkKind, VxlanSpec, GENEVE_PORT, VXLAN_PORT};

/// How the hub side of a kind reaches a subnet's compute nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubTopology {
    /// One device per subnet; each node is a flood-list (FDB) entry on it (VXLAN).
    Multipoint,
    /// One device per (subnet, node) (GRE tap, Geneve).
    PointToPoint,
}

/// One end of a tunnel: the id (VNI or GRE key), this side's underlay address and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelEnd {
    pub id: u32,
    /// This side's underlay address.
    pub local: Ipv4Addr,
    /// This side's underlay device index, if known.
    pub underlay: Option<u32>,
}

/// What differs between tunnel kinds.
pub trait TunnelDriver: Send + Sync {
    fn kind(&self) -> TunnelKind;

    /// Bytes of encapsulation per inner Ethernet frame over IPv4.
    fn overhead(&self) -> u32 {
        self.kind().overhead()
    }

    /// Largest valid id.
    fn max_id(&self) -> u32 {
        self.kind().max_id()
    }

    /// The compute node's point-to-point device toward the CNCI at `cnci`.
    fn node_device(&self, end: &TunnelEnd, cnci: Ipv4Addr) -> LinkKind;

    /// How the hub reaches the nodes of a subnet.
    fn hub_topology(&self) -> HubTopology;

    /// The hub's device of a subnet: for [`HubTopology::Multipoint`] the one device (`node` is
    /// ignored: nodes are flood entries), for [`HubTopology::PointToPoint`] the device toward
    /// `node`.
    fn hub_device(&self, end: &TunnelEnd, node: Ipv4Addr) -> LinkKind;

    /// The id a device of this kind carries, read back from the kernel's attributes.
    fn id_of(&self, link: &Link) -> Option<u32>;

    /// The id slot a subnet occupies on a node: two subnets may not share one.
    fn slot(&self, id: u32, cnci: Ipv4Addr) -> String;
}

/// The driver of `kind`.
pub fn driver(kind: TunnelKind) -> &'static dyn TunnelDriver {
    match kind {
        TunnelKind::Vxlan => &Vxlan,
        TunnelKind::Gretap => &GreTap,
        TunnelKind::Geneve => &Geneve,
    }
}

/// VXLAN over UDP 4789; the hub has one learning multipoint device per subnet.
pub struct Vxlan;

impl TunnelDriver for Vxlan {
    fn kind(&self) -> TunnelKind {
        TunnelKind::Vxlan
    }

    fn node_device(&self, end: &TunnelEnd, cnci: Ipv4Addr) -> LinkKind {
        LinkKind::Vxlan(VxlanSpec {
            vni: end.id,
            local: end.local,
            remote: Some(cnci),
            port: VXLAN_PORT,
            underlay: end.underlay,
            // One remote: nothing to learn, and learning would let a spoofed source move MACs.
            learning: false,
        })
    }

    fn hub_topology(&self) -> HubTopology {
        HubTopology::Multipoint
    }

    fn hub_device(&self, end: &TunnelEnd, _node: Ipv4Addr) -> LinkKind {
        LinkKind::Vxlan(VxlanSpec {
            vni: end.id,
            local: end.local,
            remote: None,
            port: VXLAN_PORT,
            underlay: end.underlay,
            // The hub learns which node holds which MAC; unknown ones go to the flood list.
            learning: true,
        })
    }

    fn id_of(&self, link: &Link) -> Option<u32> {
        match &link.data {
            Some(InfoData::Vxlan(attrs)) => attrs.iter().find_map(|a| match a {
                InfoVxlan::Id(id) => Some(*id),
                _ => None,
            }),
            _ => None,
        }
    }

    fn slot(&self, id: u32, _cnci: Ipv4Addr) -> String {
        // VXLAN ids must be unique per local socket (address, port), whatever the remote.
        format!("vxlan-{id}")
    }
}

/// Ethernet over GRE with the key in both directions, as ciao's libsnnet; point-to-point.
pub struct GreTap;

impl TunnelDriver for GreTap {
    fn kind(&self) -> TunnelKind {
        TunnelKind::Gretap
    }

    fn node_device(&self, end: &TunnelEnd, cnci: Ipv4Addr) -> LinkKind {
        self.hub_device(end, cnci)
    }

    fn hub_topology(&self) -> HubTopology {
        HubTopology::PointToPoint
    }

    fn hub_device(&self, end: &TunnelEnd, remote: Ipv4Addr) -> LinkKind {
        LinkKind::GreTap(GreSpec {
            key: end.id,
            local: end.local,
            remote,
            underlay: end.underlay,
        })
    }

    fn id_of(&self, link: &Link) -> Option<u32> {
        match &link.data {
            Some(InfoData::GreTap(attrs)) => attrs.iter().find_map(|a| match a {
                InfoGre::IKey(k) => Some(*k),
                _ => None,
            }),
            _ => None,
        }
    }

    fn slot(&self, id: u32, cnci: Ipv4Addr) -> String {
        // GRE demultiplexes by (remote, key).
        format!("gretap-{cnci}-{id}")
    }
}

/// Geneve over UDP 6081; point-to-point.
pub struct Geneve;

impl TunnelDriver for Geneve {
    fn kind(&self) -> TunnelKind {
        TunnelKind::Geneve
    }

    fn node_device(&self, end: &TunnelEnd, cnci: Ipv4Addr) -> LinkKind {
        self.hub_device(end, cnci)
    }

    fn hub_topology(&self) -> HubTopology {
        HubTopology::PointToPoint
    }

    fn hub_device(&self, end: &TunnelEnd, remote: Ipv4Addr) -> LinkKind {
        LinkKind::Geneve(GeneveSpec {
            vni: end.id,
            remote,
            port: GENEVE_PORT,
        })
    }

    fn id_of(&self, link: &Link) -> Option<u32> {
        match &link.data {
            Some(InfoData::Geneve(attrs)) => attrs.iter().find_map(|a| match a {
                InfoGeneve::Id(id) => Some(*id),
                _ => None,
            }),
            _ => None,
        }
    }

    fn slot(&self, id: u32, cnci: Ipv4Addr) -> String {
        // Geneve demultiplexes by (remote, VNI).
        format!("geneve-{cnci}-{id}")
    }
}

#[cfg(test)]
#[path = "tunnel_tests.rs"]
mod tests;
