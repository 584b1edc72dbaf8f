//! Removing VNICs and subnets: used by detach, by the undo of a failed or killed attach, and by
//! GC and reconcile. Every step tolerates "already gone", so running it twice is harmless.

use crate::config::VnicKind;
use crate::error::Result;
use crate::ids;
use crate::kernel::Kernel;
use crate::report::{Report, ReportEvent};
use crate::state::{Locked, VnicRecord};

/// True if a link with this alias may be removed as ours (a missing alias means a call died
/// between creating the link and labelling it; the name is ours by construction).
fn ours(alias: Option<&str>, expected: &str) -> bool {
    alias.is_none_or(|a| ids::alias_names(a, expected))
}

/// Removes one VNIC and, if it was the subnet's last, the subnet.
///
/// `rollback` marks the undo of an attach that never completed: a TenantAdded still waiting
/// for delivery is then withdrawn instead of being followed by a TenantRemoved.
pub fn vnic(
    nl: &mut impl Kernel,
    locked: &Locked<'_>,
    vnic: &VnicRecord,
    rollback: bool,
) -> Result<()> {
    let node = locked.node_tag()?;
    let alias = ids::vnic_alias(&node, &vnic.net, &vnic.id.key());
    if let Some(link) = nl.link_by_name(&vnic.host_ifname)? {
        match &vnic.kind {
            // Deleting the host end takes the far end with it, wherever it is now.
            VnicKind::Veth { .. } | VnicKind::Handoff { .. } => {
                if ours(link.alias.as_deref(), &alias) {
                    match nl.delete_link(link.index) {
                        Err(e) if !e.is_not_found() => return Err(e),
                        _ => {}
                    }
                }
            }
            VnicKind::Tap { .. } => {
                if vnic.created_tap && ours(link.alias.as_deref(), &alias) {
                    nl.delete_link(link.index)?;
                } else if link
                    .alias
                    .as_deref()
                    .is_some_and(|a| ids::alias_names(a, &alias))
                {
                    // QEMU's own tap: unplug it and forget it, QEMU removes it.
                    nl.set_master(link.index, 0)?;
                    nl.set_alias(link.index, "")?;
                }
            }
        }
    }
    let hint = (!vnic.ip.is_unspecified()).then_some(vnic.ip);
    locked.release_ips_of(&vnic.net, &vnic.id.key(), hint)?;
    locked.remove_vnic(&vnic.net, &vnic.id)?;
    if !locked.has_vnics(&vnic.net)? {
        net(nl, locked, &vnic.net, rollback)?;
    }
    Ok(())
}

/// Removes a subnet's tunnel and bridge from this node and queues TenantRemoved.
pub fn net(nl: &mut impl Kernel, locked: &Locked<'_>, key: &str, rollback: bool) -> Result<()> {
    let Some(net) = locked.net(key)? else {
        return Ok(());
    };
    let pending_added = locked
        .reports()?
        .into_iter()
        .find(|(_, r)| r.event == ReportEvent::TenantAdded && r.generation == net.generation);
    match pending_added {
        // Never delivered and never usable: withdraw it, the CNCI need not hear of it.
        Some((name, _)) if rollback => locked.remove_report(&name)?,
        _ if net.added_queued || pending_added.is_some() => {
            let agent = locked.node_identity()?.uuid;
            locked.queue_report(&Report::for_net(ReportEvent::TenantRemoved, agent, &net))?;
        }
        _ => {}
    }
    nl.revoke_bridge(&net.bridge)?;
    let node = locked.node_tag()?;
    for (name, alias) in [
        (&net.tunnel, ids::tunnel_alias(&node, key)),
        (&net.bridge, ids::bridge_alias(&node, key)),
    ] {
        if let Some(link) = nl.link_by_name(name)? {
            if ours(link.alias.as_deref(), &alias) {
                match nl.delete_link(link.index) {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
        }
    }
    let slot =
        crate::subnet::tunnel_slot(net.config.tunnel_kind, net.tunnel_id, net.config.cnci.ip);
    locked.release_tunnel_id(&slot, key)?;
    // Addresses held for workloads not attached yet (a front end's IPAM) outlive the bridge.
    for (ip, owner) in locked.reservations(key)? {
        if !crate::ipam::is_hold(&owner) {
            locked.release_ip(key, ip)?;
        }
    }
    locked.remove_ipam_cursor(key)?;
    locked.remove_net(key)
}
