//! Checking, garbage collection and reconciliation of a node's attachments with the kernel.

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::fd::AsFd;

use crate::attach::{recover, Node};
use crate::config::{VnicId, VnicKind};
use crate::error::{Error, Failures, Result};
use crate::ids::{self, AliasKind};
use crate::kernel::Kernel;
use crate::netns;
use crate::state::VnicRecord;
use crate::subnet::repair_net;
use crate::teardown;

/// What a GC or reconcile pass removed or repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub removed_vnics: Vec<String>,
    pub released_ips: Vec<String>,
    pub removed_links: Vec<String>,
    pub repaired_nets: Vec<String>,
    /// Ports whose anti-spoofing guard was missing or wrong and was put back.
    pub repaired_guards: Vec<String>,
    /// Guards of ports no VNIC record names, removed.
    pub removed_guards: Vec<String>,
}

fn check_failed(what: String) -> Error {
    Error::CheckFailed(what)
}

impl<K: Kernel> Node<K> {
    /// Verifies that a VNIC is attached as recorded: bridge, tunnel, port, its anti-spoofing
    /// guard, and, for a veth, the interface, MAC and address inside the workload's namespace.
    pub fn check(&mut self, net_key: &str, id: &VnicId) -> Result<VnicRecord> {
        let (locked, nl) = self.lock_and_recover()?;
        let vnic = locked
            .vnic(net_key, id)?
            .ok_or_else(|| check_failed(format!("{} is not attached", id.key())))?;
        let net = locked
            .net(net_key)?
            .ok_or_else(|| check_failed(format!("subnet {net_key} is not on this node")))?;
        let bridge = nl
            .link_by_name(&net.bridge)?
            .ok_or_else(|| check_failed(format!("bridge {} is missing", net.bridge)))?;
        if !bridge.up {
            return Err(check_failed(format!("bridge {} is down", net.bridge)));
        }
        // A subnet awaiting its CNCI has no tunnel yet: its local traffic works without one.
        if net.config.cnci.is_some() {
            let tunnel = nl
                .link_by_name(&net.tunnel)?
                .ok_or_else(|| check_failed(format!("tunnel {} is missing", net.tunnel)))?;
            if tunnel.master != Some(bridge.index) {
                return Err(check_failed(format!(
                    "tunnel {} is not on its bridge",
                    net.tunnel
                )));
            }
        }
        let port = nl
            .link_by_name(&vnic.host_ifname)?
            .ok_or_else(|| check_failed(format!("{} is missing", vnic.host_ifname)))?;
        if port.master != Some(bridge.index) {
            return Err(check_failed(format!(
                "{} is not on bridge {}",
                vnic.host_ifname, net.bridge
            )));
        }
        if let Some(guard) = vnic.guard() {
            if nl.guarded_ports()?.get(&vnic.host_ifname) != Some(&Some(guard)) {
                return Err(check_failed(format!(
                    "the anti-spoofing guard of {} is missing or wrong (`ciao-node reconcile` \
                     puts it back)",
                    vnic.host_ifname
                )));
            }
        }
        if let VnicKind::Veth {
            netns: path,
            ifname,
        } = &vnic.kind
        {
            let fd = netns::open(path)?;
            let mut inside = nl.open_in(fd.as_fd())?;
            let link = inside.link_by_name(ifname)?.ok_or_else(|| {
                check_failed(format!("{ifname} is missing in {}", path.display()))
            })?;
            if link.mac.map(ids::format_mac).as_deref() != Some(vnic.mac.as_str()) {
                return Err(check_failed(format!("{ifname} has the wrong MAC")));
            }
            let has_ip = inside
                .addresses(Some(link.index))?
                .iter()
                .any(|a| a.net.addr() == IpAddr::V4(vnic.ip));
            if !has_ip {
                return Err(check_failed(format!("{ifname} lacks address {}", vnic.ip)));
            }
        }
        Ok(vnic)
    }

    /// Detaches every VNIC of `net_key` (or of all subnets) that is not in `keep`, and releases
    /// addresses no VNIC holds. This is CNI GC. A VNIC that cannot be removed does not stop
    /// the others; every failure is returned.
    pub fn gc(&mut self, net_key: Option<&str>, keep: &[VnicId]) -> Result<Summary> {
        let (locked, nl) = self.lock_and_recover()?;
        let keep: HashSet<String> = keep.iter().map(VnicId::key).collect();
        let keys: Vec<String> = match net_key {
            Some(k) => vec![k.to_string()],
            None => locked.nets()?.into_iter().map(|n| n.key).collect(),
        };
        let mut summary = Summary::default();
        let mut failures = Failures::default();
        for key in keys {
            for vnic in locked.vnics(&key)? {
                if !keep.contains(&vnic.id.key())
                    && failures
                        .note(teardown::vnic(nl, &locked, &vnic, false))
                        .is_some()
                {
                    summary.removed_vnics.push(vnic.id.key());
                }
            }
            failures.note(release_orphan_ips(&locked, &key, &mut summary));
        }
        failures.into_result()?;
        Ok(summary)
    }

    /// Brings the kernel and the state directory back in line after crashes or a reboot:
    /// finishes the journal, re-creates missing bridges and tunnels of recorded subnets, drops
    /// VNICs whose workload is gone, removes links labelled as this node's that no record
    /// knows, and releases addresses and tunnel ids nobody holds.
    ///
    /// A link is this node's if its alias carries this state directory's node id; a link with
    /// the alias format from before node ids is touched only if its subnet is recorded here.
    /// Each repair and removal is attempted whatever happened to the others; every failure is
    /// returned.
    pub fn reconcile(&mut self) -> Result<Summary> {
        let locked = self.state.lock()?;
        let nl = &mut self.nl;
        recover(nl, &locked)?;
        let node = locked.node_tag()?;
        let mut summary = Summary::default();
        let mut failures = Failures::default();
        let mut known_nets = HashSet::new();
        let mut known_vnics = HashSet::new();
        let recorded_nets: HashSet<String> = locked.nets()?.into_iter().map(|n| n.key).collect();
        let awaiting_nets: HashSet<String> = locked
            .nets()?
            .into_iter()
            .filter(|n| n.config.cnci.is_none())
            .map(|n| n.key)
            .collect();
        for net in locked.nets()? {
            for vnic in locked.vnics(&net.key)? {
                if nl.link_by_name(&vnic.host_ifname)?.is_some() {
                    // Compared as the alias shows it (long keys are hashed there).
                    known_vnics.insert(ids::vnic_alias(&node, &net.key, &vnic.id.key()));
                } else if failures
                    .note(teardown::vnic(nl, &locked, &vnic, false))
                    .is_some()
                {
                    // The workload went away without a detach (its netns was deleted).
                    summary.removed_vnics.push(vnic.id.key());
                }
            }
            // The last vanished VNIC took the subnet with it; otherwise make sure it is whole.
            if locked.net(&net.key)?.is_some() {
                known_nets.insert(net.key.clone());
                let repaired = failures.note(repair_net(nl, &node, &net)).is_some()
                    // dockerd may have started since the bridge was made.
                    && failures.note(nl.allow_bridge(&net.bridge)).is_some();
                if repaired {
                    summary.repaired_nets.push(net.key.clone());
                }
                failures.note(release_orphan_ips(&locked, &net.key, &mut summary));
            }
        }
        for link in nl.links()? {
            let Some(alias) = link.alias.as_deref() else {
                continue;
            };
            let Some(parsed) = ids::parse_alias(alias) else {
                continue;
            };
            let (AliasKind::Bridge { net }
            | AliasKind::Tunnel { net }
            | AliasKind::Vnic { net, .. }) = &parsed.kind;
            let mine = match &parsed.node {
                Some(tag) => *tag == node,
                None => recorded_nets.contains(net),
            };
            if !mine {
                continue;
            }
            let stale = match &parsed.kind {
                AliasKind::Bridge { net } => !known_nets.contains(net),
                // A subnet awaiting its CNCI has no tunnel: one left by a killed assignment goes.
                AliasKind::Tunnel { net } => {
                    !known_nets.contains(net) || awaiting_nets.contains(net)
                }
                AliasKind::Vnic { net, vnic } => {
                    let current = ids::vnic_alias(&node, net, vnic);
                    !known_vnics.contains(&current) && !known_vnics.contains(alias)
                }
            };
            if !stale {
                continue;
            }
            let removed = if link.kind.as_deref() == Some("tun") {
                // QEMU's tap: unplugged and forgotten, QEMU removes it.
                failures.note(nl.set_master(link.index, 0)).is_some()
                    && failures.note(nl.set_alias(link.index, "")).is_some()
            } else {
                match nl.delete_link(link.index) {
                    Err(e) if !e.is_not_found() => failures.note(Err::<(), _>(e)).is_some(),
                    _ => true,
                }
            };
            if removed {
                summary.removed_links.push(link.name);
            }
        }
        failures.note(locked.prune_tunnel_slots(&known_nets));
        failures.note(sync_guards(nl, &locked, &mut summary));
        failures.into_result()?;
        Ok(summary)
    }
}

/// Makes the kernel's anti-spoofing guards exactly those of the recorded VNICs whose port
/// exists: puts back missing or wrong ones (a killed call, a flushed ruleset) and removes
/// those of ports no record names. Each is attempted; every failure is returned.
fn sync_guards(
    nl: &mut impl Kernel,
    locked: &crate::state::Locked<'_>,
    summary: &mut Summary,
) -> Result<()> {
    let mut wanted = std::collections::BTreeMap::new();
    for net in locked.nets()? {
        for vnic in locked.vnics(&net.key)? {
            if let Some(guard) = vnic.guard() {
                wanted.insert(vnic.host_ifname.clone(), guard);
            }
        }
    }
    let current = nl.guarded_ports()?;
    let mut failures = Failures::default();
    for (port, guard) in &wanted {
        if current.get(port) != Some(&Some(guard.clone()))
            && failures.note(nl.guard_port(guard)).is_some()
        {
            summary.repaired_guards.push(port.clone());
        }
    }
    for port in current.keys().filter(|p| !wanted.contains_key(*p)) {
        if failures.note(nl.unguard_port(port)).is_some() {
            summary.removed_guards.push(port.clone());
        }
    }
    // An older layout's table goes only once the current one guards every port.
    failures.into_result()?;
    for table in nl.remove_old_guard_tables()? {
        summary.removed_guards.push(format!("table {table}"));
    }
    Ok(())
}

fn release_orphan_ips(
    locked: &crate::state::Locked<'_>,
    key: &str,
    summary: &mut Summary,
) -> Result<()> {
    let owners: HashSet<String> = locked.vnics(key)?.into_iter().map(|v| v.id.key()).collect();
    for (ip, owner) in locked.reservations(key)? {
        if !owners.contains(&owner) && !crate::ipam::is_hold(&owner) {
            locked.release_ip(key, ip)?;
            summary.released_ips.push(format!("{ip} ({owner})"));
        }
    }
    Ok(())
}

/// Everything a node holds, for display.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeView {
    pub agent_uuid: uuid::Uuid,
    pub nets: Vec<NetView>,
    pub pending_reports: Vec<crate::report::Report>,
}

/// One tenant subnet and its VNICs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NetView {
    pub net: crate::state::NetRecord,
    pub vnics: Vec<VnicRecord>,
}

impl<K: Kernel> Node<K> {
    /// Puts the firewall rule of every recorded subnet's bridge in place again (the host's
    /// firewall may have been reloaded, e.g. by a dockerd start), under the node lock so no
    /// detach removes a bridge meanwhile. Returns the bridges that failed, with their errors;
    /// a failure does not stop the others.
    pub fn allow_bridges(&mut self) -> Result<Vec<(String, Error)>> {
        let (locked, nl) = self.lock_and_recover()?;
        let mut failed = Vec::new();
        for net in locked.nets()? {
            if let Err(e) = nl.allow_bridge(&net.bridge) {
                failed.push((net.bridge, e));
            }
        }
        Ok(failed)
    }

    /// A consistent view of the node's state (taken under the lock, after recovery).
    pub fn view(&mut self) -> Result<NodeView> {
        let (locked, _) = self.lock_and_recover()?;
        let mut nets = Vec::new();
        for net in locked.nets()? {
            let vnics = locked.vnics(&net.key)?;
            nets.push(NetView { net, vnics });
        }
        Ok(NodeView {
            agent_uuid: locked.node_identity()?.uuid,
            nets,
            pending_reports: locked.reports()?.into_iter().map(|(_, r)| r).collect(),
        })
    }
}
