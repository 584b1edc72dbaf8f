//! A tenant subnet's presence on a node: its bridge and its tunnel to the CNCI, created with the
//! first VNIC (queueing TenantAdded) and repaired when found damaged.

use std::net::{IpAddr, Ipv4Addr};

use uuid::Uuid;

use crate::config::{Cnci, SubnetConfig};
use crate::crash::crash_point;
use crate::error::{Error, Result};
use crate::ids;
use crate::kernel::Kernel;
use crate::netlink::{Link, LinkChange, LinkKind, NewLink};
use crate::report::{Report, ReportEvent};
use crate::state::{Locked, NetRecord};
use crate::tunnel::{driver, TunnelEnd, TunnelKind};

/// Checks that an attach's config agrees with the subnet already on this node. An attach that
/// names no CNCI (controller mode) joins the subnet whatever its CNCI (static, assigned or none
/// yet). An attach that names one joins only a subnet with that very CNCI, tunnel kind and id:
/// a subnet still awaiting the controller's CNCI, or assigned another one, is a Conflict.
pub(crate) fn check_same_network(net: &NetRecord, cfg: &SubnetConfig) -> Result<()> {
    let old = &net.config;
    let mut diffs = Vec::new();
    if let Some(cnci) = cfg.cnci {
        match old.cnci {
            Some(have) if have == cnci => {}
            Some(have) => diffs.push(format!(
                "cnci {}@{} vs {}@{}",
                have.uuid, have.ip, cnci.uuid, cnci.ip
            )),
            None => diffs.push(format!(
                "no cnci yet (it awaits the controller's) vs {}@{}",
                cnci.uuid, cnci.ip
            )),
        }
        if old.cnci.is_some()
            && (old.tunnel_kind != cfg.tunnel_kind || net.tunnel_id != cfg.tunnel_id())
        {
            diffs.push(format!(
                "tunnel {} {} vs {} {}",
                old.tunnel_kind,
                net.tunnel_id,
                cfg.tunnel_kind,
                cfg.tunnel_id()
            ));
        }
    }
    if old.gateway() != cfg.gateway() {
        diffs.push(format!("gateway {} vs {}", old.gateway(), cfg.gateway()));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "subnet {} of tenant {} is already on this node with other settings ({})",
            cfg.subnet,
            cfg.tenant,
            diffs.join(", ")
        )))
    }
}

/// The underlay link and local address of a tunnel to `cnci`: the named device and its first
/// IPv4 address, or the link and source address the kernel routes the CNCI's address through.
pub(crate) fn underlay_toward(
    nl: &mut impl Kernel,
    device: Option<&str>,
    cnci: Cnci,
) -> Result<(Link, Ipv4Addr)> {
    match device {
        Some(dev) => named_underlay(nl, dev),
        None => routed_underlay(nl, cnci.ip).map_err(|e| match e {
            Error::Internal(_) | Error::Invalid { .. } => e,
            other => Error::invalid(
                "cnci.ip",
                format!("no route to the CNCI at {} on this node: {other}", cnci.ip),
            ),
        }),
    }
}

fn named_underlay(nl: &mut impl Kernel, dev: &str) -> Result<(Link, Ipv4Addr)> {
    let link = nl
        .link_by_name(dev)?
        .ok_or_else(|| Error::invalid("underlay", format!("no link named {dev} on this node")))?;
    let local = nl
        .addresses(Some(link.index))?
        .into_iter()
        .find_map(|a| match a.net.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| Error::invalid("underlay", format!("{dev} has no IPv4 address")))?;
    Ok((link, local))
}

fn routed_underlay(nl: &mut impl Kernel, dst: Ipv4Addr) -> Result<(Link, Ipv4Addr)> {
    let route = nl.route_get(IpAddr::V4(dst))?;
    let link = nl
        .link_by_index(route.oif)?
        .ok_or_else(|| Error::Internal(format!("route to {dst} uses a missing link")))?;
    match route.source {
        Some(IpAddr::V4(v4)) => Ok((link, v4)),
        _ => Err(Error::invalid(
            "cnci.ip",
            format!("no IPv4 source address toward {dst}"),
        )),
    }
}

/// Where a controller-mode subnet looks for its underlay before it has a CNCI: the route the
/// kernel picks for a global address (the default route on a normal node). Only looked up.
const GLOBAL_PROBE: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

/// MTU of a subnet's workloads when no underlay is known yet: a 1500-byte Ethernet underlay.
const DEFAULT_UNDERLAY_MTU: u32 = 1500;

/// The largest encapsulation overhead of any tunnel kind: a controller-mode subnet's MTU must
/// fit whichever kind the controller picks later.
fn max_overhead() -> u32 {
    TunnelKind::ALL
        .iter()
        .map(|k| k.overhead())
        .max()
        .unwrap_or(0)
}

/// Decides underlay, local address and MTU of a subnet new to this node.
///
/// Static mode: the underlay toward the CNCI, MTU = its MTU minus the tunnel kind's overhead.
/// Controller mode (no CNCI yet): the `underlay_device` if given, else the device of the
/// default route (the route to a global address), else none (a 1500-byte underlay assumed);
/// MTU = that MTU minus the largest overhead of the three tunnel kinds (50 bytes), so the
/// workloads' MTU fits whatever tunnel the controller assigns later.
pub(crate) fn plan_net(nl: &mut impl Kernel, cfg: &SubnetConfig) -> Result<NetRecord> {
    let (underlay, local_ip, underlay_mtu, overhead) = match (cfg.cnci, &cfg.underlay_device) {
        (Some(cnci), dev) => {
            let (link, local) = underlay_toward(nl, dev.as_deref(), cnci)?;
            let mtu = link.mtu;
            (link.name, local, mtu, cfg.tunnel_kind.overhead())
        }
        (None, Some(dev)) => {
            let (link, local) = named_underlay(nl, dev)?;
            let mtu = link.mtu;
            (link.name, local, mtu, max_overhead())
        }
        (None, None) => match routed_underlay(nl, GLOBAL_PROBE) {
            Ok((link, local)) => (link.name, local, link.mtu, max_overhead()),
            Err(_) => (
                String::new(),
                Ipv4Addr::UNSPECIFIED,
                DEFAULT_UNDERLAY_MTU,
                max_overhead(),
            ),
        },
    };
    let mtu = match cfg.mtu {
        Some(m) => m,
        None => underlay_mtu
            .checked_sub(overhead)
            .filter(|m| *m >= 576)
            .ok_or_else(|| {
                Error::invalid(
                    "mtu",
                    format!(
                        "underlay {underlay} MTU {underlay_mtu} is too small for {}",
                        cfg.tunnel_kind
                    ),
                )
            })?,
    };
    Ok(NetRecord {
        key: cfg.net_key(),
        config: cfg.clone(),
        bridge: ids::bridge_name(cfg.tenant, cfg.subnet),
        tunnel: ids::tunnel_name(cfg.tenant, cfg.subnet),
        tunnel_id: if cfg.cnci.is_some() {
            cfg.tunnel_id()
        } else {
            0
        },
        underlay,
        local_ip,
        mtu,
        generation: Uuid::new_v4(),
        added_queued: false,
        controlled: cfg.cnci.is_none(),
        awaiting_cnci_since: cfg.cnci.is_none().then(crate::assign::now_unix),
        refused: None,
        ct_zone: 0,
    })
}

/// Creates a subnet's bridge and tunnel (first instance), queues TenantAdded, returns the bridge.
pub(crate) fn create_net(
    nl: &mut impl Kernel,
    locked: &Locked<'_>,
    net: &NetRecord,
) -> Result<Link> {
    // The record goes first: whatever follows, teardown finds what to undo in it.
    locked.write_net(net)?;
    crash_point(2);
    let node = locked.node_tag()?;
    let Some(slot) = net.tunnel_slot() else {
        // Controller mode: the bridge now, the tunnel when the CNCI is assigned.
        return ensure_bridge(nl, &node, net);
    };
    if let Err(owner) = locked.claim_tunnel_id(&slot, &net.key)? {
        return Err(Error::Conflict(format!(
            "{} id {} toward {} is already used on this node by {owner}; set a different tunnel id for {} of tenant {}",
            net.config.tunnel_kind, net.tunnel_id, net.config.cnci.map(|c| c.ip).unwrap_or(Ipv4Addr::UNSPECIFIED), net.config.subnet, net.config.tenant
        )));
    }
    let bridge = ensure_bridge(nl, &node, net)?;
    crash_point(3);
    ensure_tunnel(nl, &node, net, &bridge)?;
    crash_point(4);
    let agent = locked.node_identity()?.uuid;
    locked.queue_report(&Report::for_net(ReportEvent::TenantAdded, agent, net))?;
    crash_point(5);
    let mut reported = net.clone();
    reported.added_queued = true;
    locked.write_net(&reported)?;
    Ok(bridge)
}

/// Re-creates a bridge or tunnel that vanished (e.g. after a reboot) for an existing subnet;
/// returns the bridge. A subnet awaiting its CNCI has no tunnel to repair.
pub(crate) fn repair_net(nl: &mut impl Kernel, node: &str, net: &NetRecord) -> Result<Link> {
    let bridge = ensure_bridge(nl, node, net)?;
    ensure_tunnel(nl, node, net, &bridge)?;
    Ok(bridge)
}

pub(crate) fn ensure_bridge(nl: &mut impl Kernel, node: &str, net: &NetRecord) -> Result<Link> {
    let alias = ids::bridge_alias(node, &net.key);
    if let Some(link) = nl.link_by_name(&net.bridge)? {
        if link
            .alias
            .as_deref()
            .is_some_and(|a| ids::alias_names(a, &alias))
        {
            if !link.up {
                nl.set_up(link.index, true)?;
            }
            return Ok(link);
        }
        return Err(Error::Conflict(format!(
            "a link named {} exists but is not this subnet's bridge",
            net.bridge
        )));
    }
    let mut spec = NewLink::new(&net.bridge, LinkKind::Bridge);
    spec.mtu = Some(net.mtu);
    spec.mac = Some(ids::bridge_mac(net.config.tenant, net.config.subnet));
    let mut link = nl.create_link(&spec)?;
    nl.disable_ipv6(&net.bridge)?;
    nl.change_link(link.index, &up_with_alias(alias))?;
    link.up = true;
    nl.allow_bridge(&net.bridge)?;
    Ok(link)
}

fn up_with_alias(alias: String) -> LinkChange {
    LinkChange {
        up: Some(true),
        alias: Some(alias),
        ..LinkChange::default()
    }
}

/// Makes sure the subnet's tunnel exists, is up and is on its bridge (none without a CNCI).
pub(crate) fn ensure_tunnel(
    nl: &mut impl Kernel,
    node: &str,
    net: &NetRecord,
    bridge: &Link,
) -> Result<()> {
    let Some(cnci) = net.config.cnci else {
        return Ok(());
    };
    let alias = ids::tunnel_alias(node, &net.key);
    if let Some(link) = nl.link_by_name(&net.tunnel)? {
        if !link
            .alias
            .as_deref()
            .is_some_and(|a| ids::alias_names(a, &alias))
        {
            return Err(Error::Conflict(format!(
                "a link named {} exists but is not this subnet's tunnel",
                net.tunnel
            )));
        }
        if link.master != Some(bridge.index) {
            nl.set_master(link.index, bridge.index)?;
        }
        if !link.up {
            nl.set_up(link.index, true)?;
        }
        return Ok(());
    }
    let underlay = nl.link_by_name(&net.underlay)?.map(|l| l.index);
    let end = TunnelEnd {
        id: net.tunnel_id,
        local: net.local_ip,
        underlay,
    };
    let kind = driver(net.config.tunnel_kind).node_device(&end, cnci.ip);
    let mut spec = NewLink::new(&net.tunnel, kind);
    spec.mtu = Some(net.mtu);
    spec.master = Some(bridge.index);
    let link = nl.create_link(&spec)?;
    nl.disable_ipv6(&net.tunnel)?;
    nl.change_link(link.index, &up_with_alias(alias))
}
