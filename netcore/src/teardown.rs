//! Removing VNICs and subnets: used by detach, by the undo of a failed or killed attach, and by
//! GC and reconcile. Every step tolerates "already gone", so running it twice is harmless, and
//! every step is attempted: a failure is collected and returned with the others.

use crate::config::VnicKind;
use crate::error::{Failures, Result};
use crate::ids;
use crate::kernel::Kernel;
use crate::report::{Report, ReportEvent};
use crate::state::{Locked, NetRecord, VnicRecord};

/// True if a link with this alias may be removed as ours (a missing alias means a call died
/// between creating the link and labelling it; the name is ours by construction).
fn ours(alias: Option<&str>, expected: &str) -> bool {
    alias.is_none_or(|a| ids::alias_names(a, expected))
}

/// Removes one VNIC and, if it was the subnet's last, the subnet.
///
/// `rollback` marks the undo of an attach that never completed: a TenantAdded still waiting
/// for delivery is then withdrawn instead of being followed by a TenantRemoved.
///
/// Every step is attempted and every failure returned. A record stays while the kernel still
/// holds what it names, so the journal's retry finds it: a port that could not be removed
/// keeps its VNIC record, and the subnet keeps its record until tunnel, bridge and firewall
/// rule are all gone.
pub fn vnic(
    nl: &mut impl Kernel,
    locked: &Locked<'_>,
    vnic: &VnicRecord,
    rollback: bool,
) -> Result<()> {
    let mut failures = Failures::default();
    let port_gone = failures.note(remove_port(nl, locked, vnic)).is_some();
    if port_gone && !vnic.security_groups.is_empty() && !vnic.ip.is_unspecified() {
        // A port detached before the node daemon mapped it must not leave its address
        // closed for the next workload that gets it.
        failures.note(locked.net(&vnic.net).and_then(|net| match net {
            Some(net) => nl.sg_unpending(&net.bridge, vnic.ip),
            None => Ok(()),
        }));
    }
    if port_gone {
        let hint = (!vnic.ip.is_unspecified()).then_some(vnic.ip);
        failures.note(locked.release_ips_of(&vnic.net, &vnic.id.key(), hint));
        failures.note(locked.remove_vnic(&vnic.net, &vnic.id));
    }
    if failures.is_empty() && !locked.has_vnics(&vnic.net)? {
        failures.note(net(nl, locked, &vnic.net, rollback));
    }
    failures.into_result()
}

/// Takes a VNIC's port off the node: deletes the host end (of a veth, taking the far end with
/// it wherever it is now) or a tap we made; unplugs and forgets QEMU's own tap. The port's
/// anti-spoofing guard goes only after the port stopped carrying traffic.
fn remove_port(nl: &mut impl Kernel, locked: &Locked<'_>, vnic: &VnicRecord) -> Result<()> {
    let node = locked.node_tag()?;
    let alias = ids::vnic_alias(&node, &vnic.net, &vnic.id.key());
    let Some(link) = nl.link_by_name(&vnic.host_ifname)? else {
        return nl.unguard_port(&vnic.host_ifname);
    };
    let delete = match &vnic.kind {
        VnicKind::Veth { .. } | VnicKind::Handoff { .. } => ours(link.alias.as_deref(), &alias),
        VnicKind::Tap { .. } => vnic.created_tap && ours(link.alias.as_deref(), &alias),
    };
    if delete {
        // Down first: a down port bridges nothing, so its guard can go before the delete,
        // whose device unregistration would otherwise slow the nf_tables commit after it.
        gone_is_fine(nl.set_up(link.index, false))?;
        nl.unguard_port(&vnic.host_ifname)?;
        return gone_is_fine(nl.delete_link(link.index));
    }
    let labelled = link
        .alias
        .as_deref()
        .is_some_and(|a| ids::alias_names(a, &alias));
    if matches!(vnic.kind, VnicKind::Tap { .. }) && labelled {
        // QEMU's own tap: unplug it and forget it, QEMU removes it.
        let mut failures = Failures::default();
        if failures.note(nl.set_master(link.index, 0)).is_some() {
            failures.note(nl.unguard_port(&vnic.host_ifname));
        }
        failures.note(nl.set_alias(link.index, ""));
        return failures.into_result();
    }
    if matches!(vnic.kind, VnicKind::Tap { .. }) && link.master.is_none() {
        // QEMU's tap, never labelled (an attach killed early): on no bridge, so unguarded safely.
        return nl.unguard_port(&vnic.host_ifname);
    }
    Ok(())
}

/// A deletion that finds nothing to delete succeeded.
fn gone_is_fine(result: Result<()>) -> Result<()> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Removes a subnet's tunnel and bridge from this node and queues TenantRemoved.
///
/// The firewall rule, the tunnel and the bridge are each attempted whatever happened to the
/// others (an nft failure no longer leaves the tunnel up); the subnet's records go only once
/// all three are gone, and every failure is returned.
pub fn net(nl: &mut impl Kernel, locked: &Locked<'_>, key: &str, rollback: bool) -> Result<()> {
    let Some(net) = locked.net(key)? else {
        return Ok(());
    };
    report_gone(locked, &net, rollback)?;
    let mut failures = Failures::default();
    failures.note(nl.revoke_bridge(&net.bridge));
    let node = locked.node_tag()?;
    for (name, alias) in [
        (&net.tunnel, ids::tunnel_alias(&node, key)),
        (&net.bridge, ids::bridge_alias(&node, key)),
    ] {
        failures.note(delete_ours(nl, name, &alias));
    }
    if !failures.is_empty() {
        return failures.into_result();
    }
    if let Some(slot) = net.tunnel_slot() {
        locked.release_tunnel_id(&slot, key)?;
    }
    // Addresses held for workloads not attached yet (a front end's IPAM) outlive the bridge.
    for (ip, owner) in locked.reservations(key)? {
        if !crate::ipam::is_hold(&owner) {
            locked.release_ip(key, ip)?;
        }
    }
    locked.remove_ipam_cursor(key)?;
    locked.remove_net(key)
}

/// Queues TenantRemoved for a subnet's tunnel going away, once: unless it was never announced,
/// or (`rollback`) its TenantAdded is still undelivered, which is then withdrawn instead.
pub(crate) fn report_gone(locked: &Locked<'_>, net: &NetRecord, rollback: bool) -> Result<()> {
    let reports = locked.reports()?;
    let pending = |event: ReportEvent| {
        reports
            .iter()
            .find(|(_, r)| r.event == event && r.generation == net.generation)
    };
    let pending_added = pending(ReportEvent::TenantAdded);
    match pending_added {
        // Never delivered and never usable: withdraw it, the CNCI need not hear of it.
        Some((name, _)) if rollback => locked.remove_report(name)?,
        // Queued once only, also when an earlier attempt of this teardown failed later on.
        _ if pending(ReportEvent::TenantRemoved).is_some() => {}
        _ if net.added_queued || pending_added.is_some() => {
            let agent = locked.node_identity()?.uuid;
            locked.queue_report(&Report::for_net(ReportEvent::TenantRemoved, agent, net))?;
        }
        _ => {}
    }
    Ok(())
}

/// Deletes a subnet's tunnel link if it is ours; a missing link is fine.
pub(crate) fn delete_tunnel(nl: &mut impl Kernel, node: &str, net: &NetRecord) -> Result<()> {
    delete_ours(nl, &net.tunnel, &ids::tunnel_alias(node, &net.key))
}

/// Deletes the link `name` if it carries `alias` (or none); a missing link is fine.
fn delete_ours(nl: &mut impl Kernel, name: &str, alias: &str) -> Result<()> {
    match nl.link_by_name(name)? {
        Some(link) if ours(link.alias.as_deref(), alias) => {
            gone_is_fine(nl.delete_link(link.index))
        }
        _ => Ok(()),
    }
}
