//! The hub side of the tunnels, one driver per topology: how a subnet's bridge reaches the
//! compute nodes that registered it. Which topology a kind has, and its devices' attributes,
//! come from netcore's per-kind [`netcore::tunnel::TunnelDriver`], so nothing here or in the
//! hub matches on the kind.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use netcore::kernel::Kernel;
use netcore::tunnel::{HubTopology, TunnelDriver, TunnelEnd};
use uuid::Uuid;

use super::{Hub, HubKernel};
use crate::error::{Error, Result};
use crate::names;
use crate::state::SubnetRecord;

/// The MAC address a flood-list entry carries.
pub(crate) const FLOOD_MAC: [u8; 6] = [0; 6];

/// How the hub carries one subnet toward its nodes.
pub(crate) trait HubTunnel<K: HubKernel> {
    /// Brings the subnet's tunnel ports on `bridge` to exactly the record's nodes.
    fn converge(&self, hub: &mut Hub<K>, rec: &SubnetRecord, bridge: u32) -> Result<()>;
    /// Adds one node to a subnet already built; false when the subnet needs [`converge`].
    ///
    /// [`converge`]: HubTunnel::converge
    fn add_node(&self, hub: &mut Hub<K>, rec: &SubnetRecord, node: Ipv4Addr) -> Result<bool>;
    /// Removes one node's tunnel end from a subnet that keeps others.
    fn remove_node(&self, hub: &mut Hub<K>, rec: &SubnetRecord, node: Ipv4Addr) -> Result<()>;
    /// The names of the subnet's tunnel ports, found without a dump.
    fn ports(&self, cnci: Uuid, rec: &SubnetRecord) -> Vec<String>;
    /// The nodes the kernel reaches for the subnet.
    fn programmed(
        &self,
        tenant: &mut K,
        cnci: Uuid,
        rec: &SubnetRecord,
    ) -> Result<BTreeSet<Ipv4Addr>>;
}

/// The hub driver of a subnet's kind.
pub(crate) fn of<K: HubKernel>(rec: &SubnetRecord) -> &'static dyn HubTunnel<K> {
    match netcore::tunnel::driver(rec.kind).hub_topology() {
        HubTopology::Multipoint => &Multipoint,
        HubTopology::PointToPoint => &PointToPoint,
    }
}

fn kind_driver(rec: &SubnetRecord) -> &'static dyn TunnelDriver {
    netcore::tunnel::driver(rec.kind)
}

/// The flood list of the multipoint device `index`: the nodes that get unknown frames.
pub(crate) fn flood_list<K: Kernel>(tenant: &mut K, index: u32) -> Result<BTreeSet<Ipv4Addr>> {
    Ok(tenant
        .fdb_entries(index)?
        .into_iter()
        .filter(|e| e.index == index && e.mac == FLOOD_MAC)
        .filter_map(|e| match e.dst {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        })
        .collect())
}

/// One learning device per subnet (VXLAN); each node is a flood entry on it.
pub(crate) struct Multipoint;

impl<K: HubKernel> HubTunnel<K> for Multipoint {
    fn converge(&self, hub: &mut Hub<K>, rec: &SubnetRecord, bridge: u32) -> Result<()> {
        let name = names::vxlan(hub.agent.uuid, rec.subnet);
        let device = match hub.tenant.link_by_name(&name)? {
            Some(l) if kind_driver(rec).id_of(&l) == Some(rec.id) && l.master == Some(bridge) => l,
            other => {
                if let Some(l) = other {
                    hub.tenant.delete_link(l.index)?;
                }
                let spec = kind_driver(rec).hub_device(&hub.tunnel_end(rec), hub.agent.underlay_ip);
                hub.create_port(&name, spec, hub.subnet_mtu(rec.kind), bridge)?;
                hub.tenant
                    .link_by_name(&name)?
                    .ok_or_else(|| Error::Invalid(format!("tunnel {name} vanished")))?
            }
        };
        hub.tenant.set_hairpin(device.index, true)?;
        if !device.up {
            hub.tenant.set_up(device.index, true)?;
        }
        let have = flood_list(&mut hub.tenant, device.index)?;
        let want = rec.nodes();
        for node in want.difference(&have) {
            hub.tenant
                .fdb_append(device.index, FLOOD_MAC, Some(IpAddr::V4(*node)))?;
        }
        for node in have.difference(&want) {
            hub.tenant
                .fdb_delete(device.index, FLOOD_MAC, Some(IpAddr::V4(*node)))?;
        }
        Ok(())
    }

    fn add_node(&self, hub: &mut Hub<K>, rec: &SubnetRecord, node: Ipv4Addr) -> Result<bool> {
        let name = names::vxlan(hub.agent.uuid, rec.subnet);
        let Some(device) = hub.tenant.link_by_name(&name)? else {
            return Ok(false);
        };
        hub.tenant
            .fdb_append(device.index, FLOOD_MAC, Some(IpAddr::V4(node)))?;
        Ok(true)
    }

    fn remove_node(&self, hub: &mut Hub<K>, rec: &SubnetRecord, node: Ipv4Addr) -> Result<()> {
        let name = names::vxlan(hub.agent.uuid, rec.subnet);
        if let Some(device) = hub.tenant.link_by_name(&name)? {
            hub.tenant
                .fdb_delete(device.index, FLOOD_MAC, Some(IpAddr::V4(node)))?;
        }
        Ok(())
    }

    fn ports(&self, cnci: Uuid, rec: &SubnetRecord) -> Vec<String> {
        vec![names::vxlan(cnci, rec.subnet)]
    }

    fn programmed(
        &self,
        tenant: &mut K,
        cnci: Uuid,
        rec: &SubnetRecord,
    ) -> Result<BTreeSet<Ipv4Addr>> {
        match tenant.link_by_name(&names::vxlan(cnci, rec.subnet))? {
            Some(l) if kind_driver(rec).id_of(&l) == Some(rec.id) => flood_list(tenant, l.index),
            _ => Ok(BTreeSet::new()),
        }
    }
}

/// One device per (subnet, node) (GRE tap, Geneve).
pub(crate) struct PointToPoint;

impl<K: HubKernel> HubTunnel<K> for PointToPoint {
    fn converge(&self, hub: &mut Hub<K>, rec: &SubnetRecord, bridge: u32) -> Result<()> {
        let cnci = hub.agent.uuid;
        let wanted: BTreeMap<String, Ipv4Addr> = rec
            .nodes()
            .into_iter()
            .map(|n| (names::p2p(cnci, rec.subnet, n), n))
            .collect();
        for port in hub.ports_of(bridge)? {
            let foreign = port.name.starts_with(names::VXLAN_PREFIX);
            let unwanted =
                port.name.starts_with(names::P2P_PREFIX) && !wanted.contains_key(&port.name);
            if foreign || unwanted {
                hub.tenant.delete_link(port.index)?;
            }
        }
        for (name, node) in &wanted {
            if hub.tenant.link_by_name(name)?.is_some() {
                continue;
            }
            let spec = kind_driver(rec).hub_device(&hub.tunnel_end(rec), *node);
            hub.create_port(name, spec, hub.subnet_mtu(rec.kind), bridge)?;
        }
        Ok(())
    }

    fn add_node(&self, _: &mut Hub<K>, _: &SubnetRecord, _: Ipv4Addr) -> Result<bool> {
        Ok(false) // a device of its own: a converge creates exactly the missing one
    }

    fn remove_node(&self, hub: &mut Hub<K>, rec: &SubnetRecord, node: Ipv4Addr) -> Result<()> {
        hub.retire_by_name(&names::p2p(hub.agent.uuid, rec.subnet, node))
    }

    fn ports(&self, cnci: Uuid, rec: &SubnetRecord) -> Vec<String> {
        rec.nodes()
            .into_iter()
            .map(|node| names::p2p(cnci, rec.subnet, node))
            .collect()
    }

    fn programmed(
        &self,
        tenant: &mut K,
        cnci: Uuid,
        rec: &SubnetRecord,
    ) -> Result<BTreeSet<Ipv4Addr>> {
        let mut out = BTreeSet::new();
        for node in rec.nodes() {
            if tenant
                .link_by_name(&names::p2p(cnci, rec.subnet, node))?
                .is_some()
            {
                out.insert(node);
            }
        }
        Ok(out)
    }
}

impl<K: HubKernel> Hub<K> {
    /// This hub's end of a subnet's tunnels.
    fn tunnel_end(&self, rec: &SubnetRecord) -> TunnelEnd {
        TunnelEnd {
            id: rec.id,
            local: self.agent.underlay_ip,
            underlay: Some(self.underlay_index),
        }
    }
}
