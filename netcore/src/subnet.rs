//! A tenant subnet's presence on a node: its bridge and its tunnel to the CNCI, created with the
//! first VNIC (queueing TenantAdded) and repaired when found damaged.

use std::net::{IpAddr, Ipv4Addr};

use uuid::Uuid;

use crate::config::SubnetConfig;
use crate::crash::crash_point;
use crate::error::{Error, Result};
use crate::ids;
use crate::kernel::Kernel;
use crate::netlink::{Link, LinkChange, LinkKind, NewLink};
use crate::report::{Report, ReportEvent};
use crate::state::{Locked, NetRecord};
use crate::tunnel::{driver, TunnelEnd, TunnelKind};

/// The tunnel-id slot a subnet occupies on this node; two subnets may not share one.
pub(crate) fn tunnel_slot(kind: TunnelKind, id: u32, cnci_ip: Ipv4Addr) -> String {
    driver(kind).slot(id, cnci_ip)
}

pub(crate) fn check_same_network(net: &NetRecord, cfg: &SubnetConfig) -> Result<()> {
    let old = &net.config;
    let mut diffs = Vec::new();
    if old.cnci != cfg.cnci {
        diffs.push(format!(
            "cnci {}@{} vs {}@{}",
            old.cnci.uuid, old.cnci.ip, cfg.cnci.uuid, cfg.cnci.ip
        ));
    }
    if old.tunnel_kind != cfg.tunnel_kind || net.tunnel_id != cfg.tunnel_id() {
        diffs.push(format!(
            "tunnel {} {} vs {} {}",
            old.tunnel_kind,
            net.tunnel_id,
            cfg.tunnel_kind,
            cfg.tunnel_id()
        ));
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

/// Decides underlay, local address and MTU of a subnet new to this node.
pub(crate) fn plan_net(nl: &mut impl Kernel, cfg: &SubnetConfig) -> Result<NetRecord> {
    let (underlay, local_ip) = match &cfg.underlay_device {
        Some(dev) => {
            let link = nl.link_by_name(dev)?.ok_or_else(|| {
                Error::invalid("underlay", format!("no link named {dev} on this node"))
            })?;
            let local = nl
                .addresses(Some(link.index))?
                .into_iter()
                .find_map(|a| match a.net.addr() {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })
                .ok_or_else(|| Error::invalid("underlay", format!("{dev} has no IPv4 address")))?;
            (link, local)
        }
        None => {
            let route = nl.route_get(IpAddr::V4(cfg.cnci.ip)).map_err(|e| {
                Error::invalid(
                    "cnci.ip",
                    format!("no route to the CNCI at {} on this node: {e}", cfg.cnci.ip),
                )
            })?;
            let link = nl.link_by_index(route.oif)?.ok_or_else(|| {
                Error::Internal(format!("route to {} uses a missing link", cfg.cnci.ip))
            })?;
            let local = match route.source {
                Some(IpAddr::V4(v4)) => v4,
                _ => {
                    return Err(Error::invalid(
                        "cnci.ip",
                        format!("no IPv4 source address toward {}", cfg.cnci.ip),
                    ))
                }
            };
            (link, local)
        }
    };
    let mtu = match cfg.mtu {
        Some(m) => m,
        None => underlay
            .mtu
            .checked_sub(cfg.tunnel_kind.overhead())
            .filter(|m| *m >= 576)
            .ok_or_else(|| {
                Error::invalid(
                    "mtu",
                    format!(
                        "underlay {} MTU {} is too small for {}",
                        underlay.name, underlay.mtu, cfg.tunnel_kind
                    ),
                )
            })?,
    };
    Ok(NetRecord {
        key: cfg.net_key(),
        config: cfg.clone(),
        bridge: ids::bridge_name(cfg.tenant, cfg.subnet),
        tunnel: ids::tunnel_name(cfg.tenant, cfg.subnet),
        tunnel_id: cfg.tunnel_id(),
        underlay: underlay.name,
        local_ip,
        mtu,
        generation: Uuid::new_v4(),
        added_queued: false,
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
    let slot = tunnel_slot(net.config.tunnel_kind, net.tunnel_id, net.config.cnci.ip);
    if let Err(owner) = locked.claim_tunnel_id(&slot, &net.key)? {
        return Err(Error::Conflict(format!(
            "{} id {} toward {} is already used on this node by {owner}; set a different tunnel id for {} of tenant {}",
            net.config.tunnel_kind, net.tunnel_id, net.config.cnci.ip, net.config.subnet, net.config.tenant
        )));
    }
    let node = locked.node_tag()?;
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
/// returns the bridge.
pub(crate) fn repair_net(nl: &mut impl Kernel, node: &str, net: &NetRecord) -> Result<Link> {
    let bridge = ensure_bridge(nl, node, net)?;
    ensure_tunnel(nl, node, net, &bridge)?;
    Ok(bridge)
}

fn ensure_bridge(nl: &mut impl Kernel, node: &str, net: &NetRecord) -> Result<Link> {
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

fn ensure_tunnel(nl: &mut impl Kernel, node: &str, net: &NetRecord, bridge: &Link) -> Result<()> {
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
    let kind = driver(net.config.tunnel_kind).node_device(&end, net.config.cnci.ip);
    let mut spec = NewLink::new(&net.tunnel, kind);
    spec.mtu = Some(net.mtu);
    spec.master = Some(bridge.index);
    let link = nl.create_link(&spec)?;
    nl.disable_ipv6(&net.tunnel)?;
    nl.change_link(link.index, &up_with_alias(alias))
}
