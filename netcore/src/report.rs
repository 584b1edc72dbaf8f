//! Tunnel-end reports (SSNTP TenantAdded / TenantRemoved) recorded for later delivery.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::NetRecord;
use crate::tunnel::TunnelKind;

/// Which event a report becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportEvent {
    TenantAdded,
    TenantRemoved,
}

/// The fields of reference/ssntp.md §7.1 plus the tunnel kind and id this project adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub event: ReportEvent,
    pub agent_uuid: Uuid,
    pub agent_ip: Ipv4Addr,
    pub tenant_uuid: Uuid,
    pub tenant_subnet: String,
    pub concentrator_uuid: Uuid,
    pub concentrator_ip: Ipv4Addr,
    /// ciao's key: LE u32 of the subnet address.
    pub subnet_key: u32,
    pub tunnel_kind: TunnelKind,
    pub tunnel_id: u32,
    /// The subnet's lifetime on this node this report belongs to.
    pub generation: Uuid,
}

impl Report {
    /// The report for a subnet's tunnel appearing or disappearing on this node. Only a subnet
    /// with a CNCI has a tunnel to report (one awaiting its CNCI would name the nil CNCI).
    pub fn for_net(event: ReportEvent, agent_uuid: Uuid, net: &NetRecord) -> Self {
        let cnci = net.config.cnci.unwrap_or(crate::config::Cnci {
            uuid: Uuid::nil(),
            ip: Ipv4Addr::UNSPECIFIED,
        });
        Report {
            event,
            agent_uuid,
            agent_ip: net.local_ip,
            tenant_uuid: net.config.tenant,
            tenant_subnet: net.config.subnet.to_string(),
            concentrator_uuid: cnci.uuid,
            concentrator_ip: cnci.ip,
            subnet_key: crate::ids::subnet_key(net.config.subnet),
            tunnel_kind: net.config.tunnel_kind,
            tunnel_id: net.tunnel_id,
            generation: net.generation,
        }
    }
}
