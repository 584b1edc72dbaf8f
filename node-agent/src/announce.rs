//! Re-announcement of a compute node's current registrations at its CNCIs.
//!
//! The node's state directory is authoritative for which tunnel ends exist on it. A report may
//! be lost with a scheduler or CNCI that dies after the frame left the node, so the node says
//! again, from its current state, what each CNCI should hold: one TenantAdded per subnet (all a
//! Go CNCI understands) followed by one TenantSync listing exactly those subnets (this
//! project's CNCI prunes the agent's entries that are not listed).

use std::collections::BTreeMap;

use netcore::state::NetRecord;
use netcore::{Report, ReportEvent};
use ssntp::frame::{event, kind, Frame};
use ssntp::payloads::{
    Ipv4Subnet, Payload, TenantAdded, TenantAddedEvent, TenantRemoved, TenantSync, TenantSyncEvent,
};
use uuid::Uuid;

/// One CNCI as this node addresses it: its UUID and the tenant it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CnciKey {
    pub cnci: Uuid,
    pub tenant: Uuid,
}

impl CnciKey {
    fn of_report(report: &Report) -> Self {
        CnciKey {
            cnci: report.concentrator_uuid,
            tenant: report.tenant_uuid,
        }
    }

    /// The CNCI of a subnet; `None` for one awaiting its CNCI.
    fn of_net(net: &NetRecord) -> Option<Self> {
        Some(CnciKey {
            cnci: net.config.cnci?.uuid,
            tenant: net.config.tenant,
        })
    }
}

/// The TenantAdded/TenantRemoved body of a report, as the CNCI checks it.
fn body_of(report: &Report) -> anyhow::Result<TenantAddedEvent> {
    let subnet: Ipv4Subnet = report
        .tenant_subnet
        .parse()
        .map_err(|e| anyhow::anyhow!("report subnet {}: {e:?}", report.tenant_subnet))?;
    Ok(TenantAddedEvent::new(
        report.agent_uuid,
        report.agent_ip,
        report.tenant_uuid,
        subnet,
        report.concentrator_uuid,
        report.concentrator_ip,
    )
    .with_tunnel(report.tunnel_kind, report.tunnel_id))
}

/// The SSNTP frame for one report.
pub fn frame_for(report: &Report) -> anyhow::Result<Frame> {
    let body = body_of(report)?;
    let (operand, payload) = match report.event {
        ReportEvent::TenantAdded => (event::TENANT_ADDED, TenantAdded(body).to_yaml()),
        ReportEvent::TenantRemoved => (event::TENANT_REMOVED, TenantRemoved(body).to_yaml()),
    };
    Ok(Frame::new(kind::EVENT, operand, report.agent_uuid, payload))
}

/// Subnets whose TenantAdded was queued, i.e. that the CNCI has been (or will be) told of.
/// A subnet still being attached is left out: should the attach roll back, no TenantRemoved
/// would follow an announcement of it.
fn announced(nets: &[NetRecord]) -> impl Iterator<Item = &NetRecord> {
    nets.iter()
        .filter(|n| n.added_queued && n.config.cnci.is_some())
}

/// Every CNCI the node currently has announced subnets for.
pub fn cncis_in(nets: &[NetRecord]) -> Vec<CnciKey> {
    let mut keys: Vec<_> = announced(nets).filter_map(CnciKey::of_net).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The CNCIs (with their tenants) that the node uses under the CNCI UUID `cnci`.
pub fn cncis_named(nets: &[NetRecord], cnci: Uuid) -> Vec<CnciKey> {
    cncis_in(nets)
        .into_iter()
        .filter(|k| k.cnci == cnci)
        .collect()
}

/// What `key` should hold from this node: one TenantAdded per current subnet, then a
/// TenantSync listing exactly them (empty when the node has none left there).
pub fn announcement(agent: Uuid, key: CnciKey, nets: &[NetRecord]) -> anyhow::Result<Vec<Frame>> {
    let mut frames = Vec::new();
    let mut bodies = Vec::new();
    for net in announced(nets).filter(|n| CnciKey::of_net(n) == Some(key)) {
        let report = Report::for_net(ReportEvent::TenantAdded, agent, net);
        frames.push(frame_for(&report)?);
        bodies.push(body_of(&report)?);
    }
    frames.push(sync_frame(agent, key, bodies));
    Ok(frames)
}

/// A TenantSync for `key` listing `subnets`.
fn sync_frame(agent: Uuid, key: CnciKey, subnets: Vec<TenantAddedEvent>) -> Frame {
    let body = TenantSyncEvent {
        agent_uuid: agent.to_string(),
        concentrator_uuid: key.cnci.to_string(),
        tenant_uuid: key.tenant.to_string(),
        subnets,
    };
    Frame::new(
        kind::EVENT,
        event::TENANT_SYNC,
        agent,
        TenantSync(body).to_yaml(),
    )
}

/// The CNCIs that must hear a TenantSync after `delivered` was sent, so that the last word
/// they hear from this node matches `nets`: those that got a TenantRemoved (which may have left
/// a stale entry, e.g. of an older lifetime of the subnet, or leave the CNCI with none), and
/// those that got a report for a subnet lifetime that no longer exists on the node.
pub fn needing_final_word(delivered: &[Report], nets: &[NetRecord]) -> Vec<CnciKey> {
    let current: BTreeMap<(Uuid, Uuid), ()> = announced(nets)
        .map(|n| ((n.generation, n.config.tenant), ()))
        .collect();
    let mut keys: Vec<_> = delivered
        .iter()
        .filter(|r| {
            r.event == ReportEvent::TenantRemoved
                || !current.contains_key(&(r.generation, r.tenant_uuid))
        })
        .map(CnciKey::of_report)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcore::config::{Cnci, SubnetConfig};
    use std::net::Ipv4Addr;

    const AGENT: Uuid = Uuid::from_u128(1);
    const CNCI_A: Uuid = Uuid::from_u128(0xa);
    const CNCI_B: Uuid = Uuid::from_u128(0xb);

    fn net(subnet: &str, cnci: Uuid, queued: bool) -> NetRecord {
        NetRecord {
            key: subnet.replace(['.', '/'], "-"),
            config: SubnetConfig {
                tenant: Uuid::from_u128(u128::from(cnci.as_u128() as u8) + 100),
                subnet: subnet.parse().expect("subnet"),
                cnci: Some(Cnci {
                    uuid: cnci,
                    ip: Ipv4Addr::new(192, 0, 2, 1),
                }),
                tunnel_kind: netcore::TunnelKind::Vxlan,
                tunnel_id: None,
                node_range: None,
                gateway: None,
                mtu: None,
                underlay_device: None,
            },
            bridge: "br".into(),
            tunnel: "tun".into(),
            tunnel_id: 7,
            underlay: "ul0".into(),
            local_ip: Ipv4Addr::new(192, 0, 2, 9),
            mtu: 1450,
            generation: Uuid::new_v4(),
            added_queued: queued,
            controlled: false,
            awaiting_cnci_since: None,
            refused: None,
            ct_zone: 0,
        }
    }

    fn sync_of(frame: &Frame) -> TenantSync {
        assert_eq!(frame.operand, event::TENANT_SYNC);
        TenantSync::from_yaml(&frame.payload).expect("sync payload")
    }

    #[test]
    fn announcement_is_one_added_per_subnet_then_a_sync_listing_exactly_them() {
        let nets = [
            net("172.16.1.0/24", CNCI_A, true),
            net("172.16.2.0/24", CNCI_A, true),
            net("172.16.3.0/24", CNCI_A, false),
            net("172.17.1.0/24", CNCI_B, true),
        ];
        let keys = cncis_in(&nets);
        assert_eq!(keys.len(), 2);
        let key_a = cncis_named(&nets, CNCI_A)[0];
        let frames = announcement(AGENT, key_a, &nets).expect("frames");
        assert_eq!(frames.len(), 3, "two TenantAdded, one TenantSync");
        let added: Vec<_> = frames[..2]
            .iter()
            .map(|f| {
                assert_eq!(f.operand, event::TENANT_ADDED);
                let p = TenantAdded::from_yaml(&f.payload).expect("payload");
                p.remote_subnet().expect("valid");
                p.0.tenant_subnet
            })
            .collect();
        let sync = sync_of(&frames[2]);
        assert_eq!(sync.concentrator().expect("cnci"), CNCI_A);
        assert_eq!(sync.agent().expect("agent"), AGENT);
        let listed: Vec<_> = sync
            .0
            .subnets
            .iter()
            .map(|s| s.tenant_subnet.clone())
            .collect();
        assert_eq!(listed, added);
        assert_eq!(sync.remote_subnets().expect("checked").len(), 2);
    }

    #[test]
    fn a_cnci_with_nothing_left_gets_an_empty_sync_after_its_last_removal() {
        let gone = net("172.16.1.0/24", CNCI_A, true);
        let removed = Report::for_net(ReportEvent::TenantRemoved, AGENT, &gone);
        let kept = net("172.17.1.0/24", CNCI_B, true);
        let added = Report::for_net(ReportEvent::TenantAdded, AGENT, &kept);
        let nets = [kept];
        let keys = needing_final_word(&[added, removed], &nets);
        assert_eq!(keys.len(), 1, "only the CNCI that got a removal: {keys:?}");
        assert_eq!(keys[0].cnci, CNCI_A);
        let frames = announcement(AGENT, keys[0], &nets).expect("frames");
        assert_eq!(frames.len(), 1);
        assert!(sync_of(&frames[0]).0.subnets.is_empty());
    }

    #[test]
    fn an_added_report_for_a_lifetime_that_is_gone_gets_a_final_word() {
        let old = net("172.16.1.0/24", CNCI_A, true);
        let stale = Report::for_net(ReportEvent::TenantAdded, AGENT, &old);
        assert_eq!(needing_final_word(&[stale], &[]).len(), 1);
        let current = Report::for_net(ReportEvent::TenantAdded, AGENT, &old);
        assert!(needing_final_word(&[current], &[old]).is_empty());
    }
}
