//! The hub data plane in the kernel: the tenant namespace, its uplink, one bridge per tenant
//! subnet holding the gateway, and the tunnel ends toward the compute nodes.
//!
//! Every method converges the kernel toward a record and is safe to repeat: it creates what is
//! missing, fixes what differs and leaves what is right alone, so a restarted agent does not
//! disturb traffic that is flowing. Tunnel devices are created in the underlay namespace (their
//! sockets must live there) and then moved into the tenant namespace, so a workload can never
//! reach a socket that demultiplexes other tenants' VNIs (reference/vxlan-hub.md).
//!
//! The hub is generic over netcore's [`Kernel`] (the real [`Netlink`], or the recording fake in
//! tests) and reaches named namespaces and nft through a [`HubHost`]; each tunnel kind's
//! devices come from a hub driver per topology ([`tunnel`]).

mod base;
mod host;
mod public;
mod teardown;
mod tunnel;

#[cfg(test)]
mod fake_host;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use netcore::kernel::Kernel;
use netcore::netlink::{Link, LinkChange, LinkKind, Netlink, NewLink};
use netcore::TunnelKind;

pub use host::{HubHost, System};
pub use teardown::{destroy, destroy_with, programmed, programmed_in, programmed_now};

use crate::error::{Error, Result};
use crate::names;
use crate::reaper::Reaper;
use crate::state::{AgentRecord, Desired, SubnetRecord};

/// A kernel handle the hub can use: one per namespace, and one more for the reaper's thread.
pub trait HubKernel: Kernel + Send + 'static {}

impl<K: Kernel + Send + 'static> HubKernel for K {}

/// A handle on one CNCI's piece of the network node.
pub struct Hub<K: HubKernel = Netlink> {
    agent: AgentRecord,
    host: Arc<dyn HubHost>,
    underlay: K,
    tenant_ns: OwnedFd,
    tenant: K,
    underlay_index: u32,
    underlay_mtu: u32,
    underlay_mac: Option<[u8; 6]>,
    underlay_nets: Vec<Ipv4Net>,
    /// Tunnel ports of the tenant namespace put in [`RETIRED_GROUP`], awaiting
    /// [`Hub::flush_retired`].
    retired: usize,
    /// Deletes the bridges of removed subnets in the background.
    reaper: Reaper<K>,
    /// The underlay's addresses as [`Hub::open_with`] read them, for the first
    /// [`Hub::fences`]: at start the namespace need not be read twice (each read is as long as
    /// the node has CNCIs).
    addrs_at_open: Option<Vec<netcore::netlink::Address>>,
    /// The uplink was created by this hub: no route can point at it yet.
    uplink_fresh: bool,
}

/// The link group of tunnel ports that are to go. The kernel deletes a whole group with one
/// RTM_DELLINK and one RCU grace period (200 VXLAN devices: 55 ms), where deleting them one
/// by one costs a grace period each (about 35 ms each on a busy 2-core node, measured).
pub const RETIRED_GROUP: u32 = 0xc1a0_0de1;

/// Retire links in one batch at the latest once this many wait.
const RETIRE_BATCH: usize = 1024;

/// The alias of a link the agent made, so leftovers in the underlay namespace can be found.
fn alias(agent: &AgentRecord, what: &str) -> String {
    format!("ciao-hub:{}:{what}", agent.uuid)
}

/// Turns IPv6 off in the tenant namespace, for its devices present and to come. The hub
/// routes IPv4 only and bridges the tenant's IPv6 frames at layer 2, which needs no IPv6 on the
/// bridge. With IPv6 on, every bridge and tunnel holds link-local routes, and the kernel walks
/// the whole IPv6 routing table whenever a device goes down, leaves or changes its MTU
/// (`fib6_ifdown`, `rt6_mtu_change_route`: 70 % of a removal's time with 2,500 subnets, perf):
/// each removal cost time proportional to the number of subnets.
fn disable_ipv6<K: Kernel>(tenant: &mut K) -> Result<()> {
    for key in [
        "ipv6/conf/default/disable_ipv6",
        "ipv6/conf/all/disable_ipv6",
    ] {
        match tenant.write_sysctl(key, "1") {
            // A kernel without IPv6 has no such key, and nothing to turn off.
            Err(netcore::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

impl Hub {
    /// Opens (creating) the tenant namespace and finds the underlay interface, which must hold
    /// the agent's underlay address in the calling namespace.
    pub fn open(agent: &AgentRecord) -> Result<Hub> {
        Hub::open_with(Netlink::open()?, Arc::new(System), agent)
    }
}

impl<K: HubKernel> Hub<K> {
    /// [`Hub::open`] on a given kernel handle of the underlay namespace and host.
    pub fn open_with(mut underlay: K, host: Arc<dyn HubHost>, agent: &AgentRecord) -> Result<Self> {
        let addrs = underlay.addresses(None)?;
        let mine = addrs
            .iter()
            .find(|a| a.net.addr() == IpAddr::V4(agent.underlay_ip))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "underlay address {} is on no interface of this network namespace",
                    agent.underlay_ip
                ))
            })?;
        let index = mine.index;
        let underlay_nets = addrs
            .iter()
            .filter(|a| a.index == index)
            .filter_map(|a| match a.net {
                IpNet::V4(n) => Some(n.trunc()),
                IpNet::V6(_) => None,
            })
            .collect();
        let link = underlay
            .link_by_index(index)?
            .ok_or_else(|| Error::Invalid("the underlay interface vanished".into()))?;
        if let Some(ext) = &agent.external_dev {
            if underlay.link_by_name(ext)?.is_none() {
                return Err(Error::Invalid(format!(
                    "external device {ext} does not exist in this network namespace"
                )));
            }
        }
        let tenant_ns = host.ensure_netns(&agent.netns)?;
        let mut tenant = underlay.open_in(tenant_ns.as_fd())?;
        disable_ipv6(&mut tenant)?;
        let reaper = Reaper::start(underlay.open_in(tenant_ns.as_fd())?)?;
        Ok(Self {
            agent: agent.clone(),
            host,
            underlay,
            tenant_ns,
            tenant,
            underlay_index: index,
            underlay_mtu: link.mtu,
            underlay_mac: link.mac,
            underlay_nets,
            retired: 0,
            reaper,
            addrs_at_open: Some(addrs),
            uplink_fresh: false,
        })
    }

    /// Puts a tenant-namespace link into [`RETIRED_GROUP`], flushing when the batch is full.
    fn retire(&mut self, index: u32) -> Result<()> {
        match self.tenant.set_group(index, RETIRED_GROUP) {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        }
        self.retired += 1;
        if self.retired >= RETIRE_BATCH {
            self.delete_retired()?;
        }
        Ok(())
    }

    fn retire_by_name(&mut self, name: &str) -> Result<()> {
        match self.tenant.link_by_name(name)? {
            Some(link) => self.retire(link.index),
            None => Ok(()),
        }
    }

    /// The agent has no frame waiting: deletes the retired links and lets the reaper work.
    pub fn flush_retired(&mut self) -> Result<()> {
        self.reaper.resume();
        self.delete_retired()
    }

    /// Deletes every retired link in one request: before anything is created in the tenant
    /// namespace (a retired link may hold the name) and when a batch is full. The reaper stays
    /// paused: each of its requests holds the rtnl lock that frames need.
    fn delete_retired(&mut self) -> Result<()> {
        if self.retired == 0 {
            return Ok(());
        }
        match self.tenant.delete_group(RETIRED_GROUP) {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
        self.retired = 0;
        Ok(())
    }

    pub fn tenant_ns(&self) -> BorrowedFd<'_> {
        self.tenant_ns.as_fd()
    }

    /// The MAC of the underlay interface (ConcentratorInstanceAdded's `concentrator_mac`).
    pub fn underlay_mac(&self) -> Option<[u8; 6]> {
        self.underlay_mac
    }

    /// MTU of a tenant subnet carried by `kind` over this underlay.
    pub fn subnet_mtu(&self, kind: TunnelKind) -> u32 {
        self.underlay_mtu.saturating_sub(kind.overhead())
    }

    /// The bridge of a subnet, created with the gateway address if missing.
    fn ensure_bridge(&mut self, rec: &SubnetRecord) -> Result<Link> {
        let name = names::bridge(rec.subnet);
        let mtu = self.subnet_mtu(rec.kind);
        // A fixed MAC: a bridge otherwise takes its ports' addresses, and the gateway's MAC
        // would change under the workloads' ARP caches as CNs come and go.
        let mac = netcore::ids::mac_from_ip(rec.gateway());
        let bridge = match self.tenant.link_by_name(&name)? {
            Some(link) => link,
            None => {
                let mut spec = NewLink::new(name.clone(), LinkKind::Bridge);
                spec.mtu = Some(mtu);
                spec.mac = Some(mac);
                self.tenant.create_link(&spec)?
            }
        };
        if bridge.mac != Some(mac) {
            self.tenant.set_mac(bridge.index, mac)?;
        }
        let gateway = Ipv4Net::new(rec.gateway(), rec.subnet.prefix_len()).map_err(bad)?;
        self.tenant.add_address(bridge.index, IpNet::V4(gateway))?;
        if !bridge.up || bridge.mtu != mtu || bridge.alias.is_none() {
            self.tenant.change_link(
                bridge.index,
                &LinkChange {
                    up: Some(true),
                    mtu: Some(mtu),
                    alias: Some(alias(&self.agent, &rec.subnet.to_string())),
                    ..Default::default()
                },
            )?;
        }
        Ok(bridge)
    }

    /// Creates a tunnel device in the underlay namespace and moves it into the tenant's, as a
    /// port of `bridge`. A half-made leftover of an earlier attempt is removed first.
    fn create_port(&mut self, name: &str, kind: LinkKind, mtu: u32, bridge: u32) -> Result<()> {
        self.underlay.delete_link_by_name(name)?;
        let mut spec = NewLink::new(name, kind);
        spec.mtu = Some(mtu);
        let link = self.underlay.create_link(&spec)?;
        let labelled = self
            .underlay
            .set_alias(link.index, &alias(&self.agent, name));
        if let Err(e) = labelled.and_then(|()| {
            self.underlay
                .move_to_netns(link.index, self.tenant_ns.as_fd().as_raw_fd())
        }) {
            let _ = self.underlay.delete_link(link.index);
            return Err(e.into());
        }
        let moved = self
            .tenant
            .link_by_name(name)?
            .ok_or_else(|| Error::Invalid(format!("tunnel {name} vanished during its move")))?;
        self.tenant.disable_ipv6(name)?;
        self.tenant.set_master(moved.index, bridge)?;
        self.tenant.set_up(moved.index, true)?;
        Ok(())
    }

    /// Brings one subnet to its record: bridge, tunnel device(s), flood list.
    pub fn ensure_subnet(&mut self, rec: &SubnetRecord) -> Result<()> {
        // A bridge handed to the reaper and not yet condemned is taken back; one already
        // condemned no longer has the subnet's name.
        if let Some(bridge) = self.tenant.link_by_name(&names::bridge(rec.subnet))? {
            self.reaper.reprieve(bridge.index);
        }
        self.delete_retired()?;
        let bridge = self.ensure_bridge(rec)?;
        tunnel::of(rec).converge(self, rec, bridge.index)
    }

    fn ports_of(&mut self, bridge: u32) -> Result<Vec<Link>> {
        Ok(self
            .tenant
            .links()?
            .into_iter()
            .filter(|l| l.master == Some(bridge))
            .collect())
    }

    /// The compute nodes whose tunnel end the kernel has for this subnet.
    pub fn programmed(&mut self, rec: &SubnetRecord) -> Result<BTreeSet<Ipv4Addr>> {
        tunnel::of(rec).programmed(&mut self.tenant, self.agent.uuid, rec)
    }

    /// Adds one compute node to a subnet that [`Hub::ensure_subnet`] has already built: one
    /// flood entry (or one point-to-point device) instead of a full pass, so a burst of
    /// registrations costs one kernel call each.
    pub fn add_node(&mut self, rec: &SubnetRecord, node: Ipv4Addr) -> Result<()> {
        self.delete_retired()?;
        if tunnel::of(rec).add_node(self, rec, node)? {
            return Ok(());
        }
        self.ensure_subnet(rec)
    }

    /// Removes one compute node's tunnel end from a subnet that keeps other nodes.
    pub fn remove_node(&mut self, rec: &SubnetRecord, node: Ipv4Addr) -> Result<()> {
        tunnel::of(rec).remove_node(self, rec, node)
    }

    /// Removes a subnet's bridge and its tunnel ports, found by their names (no dump of the
    /// namespace, whose size grows with the number of subnets): the bridge is condemned (down
    /// and renamed, out of service now) and deleted in the background, the ports are retired
    /// and go with the next [`Hub::flush_retired`]. `rec` is the subnet's last record.
    pub fn remove_subnet(&mut self, rec: &SubnetRecord) -> Result<()> {
        for port in tunnel::of::<K>(rec).ports(self.agent.uuid, rec) {
            self.retire_by_name(&port)?;
        }
        // The bridge goes to the reaper as it is: taking it down costs a walk of the routes
        // (see reaper.rs), which the frame does not pay. Without its tunnel it serves nobody.
        if let Some(bridge) = self.tenant.link_by_name(&names::bridge(rec.subnet))? {
            self.reaper.condemn(bridge.index);
        }
        Ok(())
    }

    /// Condemns a bridge at once (down, renamed) and queues its deletion: for strays found at
    /// start, which nothing may take back.
    fn condemn_bridge(&mut self, name: &str) -> Result<()> {
        let Some(bridge) = self.tenant.link_by_name(name)? else {
            return Ok(());
        };
        crate::reaper::condemn(&mut self.tenant, bridge.index)?;
        self.reaper.delete(bridge.index);
        Ok(())
    }

    /// Holds the background deletion of bridges back while frames are handled.
    pub fn busy(&self) {
        self.reaper.pause();
    }

    /// Bridges still waiting for deletion.
    pub fn bridges_pending(&self) -> usize {
        self.reaper.pending()
    }

    /// Waits until every removed subnet's bridge is gone from the kernel.
    pub fn wait_bridges_gone(&self) {
        self.reaper.wait_all()
    }

    /// Deletes tunnel devices of this CNCI left in the underlay namespace by a creation that
    /// was interrupted before their move. Only a recorded subnet's creation makes one (the
    /// record is written first, and a start converges before any frame may remove it), so a
    /// CNCI without subnets skips this dump of every link of the node.
    fn remove_underlay_leftovers(&mut self) -> Result<()> {
        let prefix = alias(&self.agent, "");
        for link in self.underlay.links()? {
            let leftover = link
                .alias
                .as_deref()
                .is_some_and(|a| a.starts_with(&prefix) && !a.ends_with(":uplink"));
            if leftover {
                self.underlay.delete_link(link.index)?;
            }
        }
        Ok(())
    }

    /// Converges everything: base, every desired subnet, public IPs; removes subnets and
    /// tunnel devices that are no longer desired and leftovers of interrupted creations.
    pub fn reconcile(&mut self, desired: &Desired) -> Result<()> {
        self.ensure_base()?;
        if !desired.subnets.is_empty() {
            self.remove_underlay_leftovers()?;
        }
        // One dump serves both clean-ups: bridges of subnets no record wants (with their ports),
        // and tunnel devices left unattached (a kill between a move and its enslaving), which
        // `ensure_subnet` below then re-creates.
        let wanted: BTreeSet<String> = desired.subnets.keys().map(|s| names::bridge(*s)).collect();
        let links = self.tenant.links()?;
        let stray_bridges: BTreeSet<u32> = links
            .iter()
            .filter(|l| {
                l.name.starts_with(names::BRIDGE_PREFIX)
                    && l.kind.as_deref() == Some("bridge")
                    && !wanted.contains(&l.name)
            })
            .map(|l| l.index)
            .collect();
        for link in &links {
            let tunnel = link.name.starts_with(names::VXLAN_PREFIX)
                || link.name.starts_with(names::P2P_PREFIX);
            let orphan = match link.master {
                Some(m) => stray_bridges.contains(&m),
                None => tunnel,
            };
            if orphan {
                self.retire(link.index)?;
            }
        }
        self.flush_retired()?;
        for link in links.iter().filter(|l| stray_bridges.contains(&l.index)) {
            self.condemn_bridge(&link.name)?;
        }
        // One subnet the kernel refuses (say, its VNI taken by another tenant's CNCI on the same
        // underlay address) must not keep the rest of the tenant down.
        for rec in desired.subnets.values() {
            if let Err(e) = self.ensure_subnet(rec) {
                tracing::error!("subnet {}: {e}", rec.subnet);
            }
        }
        self.apply_public_ips(&desired.public_ips, desired.ingress.as_ref())
    }
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}
