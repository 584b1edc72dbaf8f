//! The API's JSON documents. The server writes them and `ciao-net` reads them, so the two
//! cannot drift apart. States are the store's own words (`connected`, `ready`, `deleting`, ...).

use std::net::Ipv4Addr;

use ciao_types::TunnelKind;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{AutoSlice, Cnci, ComputeNode, NetworkNode, PublicIpAssignment, TenantSubnet};
use crate::pool::PublicPool;
use crate::security::outcome::{AppliedState, IngressOutcome, NodeGroupsOutcome};

/// The body of every refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesView {
    pub network_nodes: Vec<NetworkNodeView>,
    pub compute_nodes: Vec<ComputeNodeView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkNodeView {
    pub uuid: Uuid,
    /// `connected` or `disconnected`.
    pub state: String,
    pub underlay: Ipv4Addr,
    pub external_device: String,
    pub capacity: u32,
    /// Its CNCIs that are not gone.
    pub cncis: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeNodeView {
    pub uuid: Uuid,
    /// `connected` or `disconnected`.
    pub state: String,
    pub underlay: Ipv4Addr,
}

/// One CNCI (`GET /v1/cncis`, and inside a tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CnciView {
    pub uuid: Uuid,
    pub tenant: Uuid,
    /// `requested`, `starting`, `ready`, `retiring` or `gone`.
    pub state: String,
    pub network_node: Uuid,
    pub underlay: Ipv4Addr,
}

/// One line of `GET /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSummary {
    pub uuid: Uuid,
    /// `active` or `deleting`.
    pub state: String,
    pub cnci: Option<CnciView>,
    pub subnets: Vec<Ipv4Net>,
    pub public_ips: usize,
}

/// `GET /v1/tenants/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantView {
    pub uuid: Uuid,
    pub state: String,
    /// Its live CNCI; else its last one, gone (a new one is placed on its next request).
    pub cnci: Option<CnciView>,
    pub subnets: Vec<SubnetView>,
    pub public_ips: Vec<PublicIpView>,
    /// Whether the live CNCI has the stored forwards, SSH access and ingress rules in force;
    /// absent without a live CNCI (and in a pre-outcome controller's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressView>,
    /// Each compute node with filtered ports of the tenant: whether it loaded the groups last
    /// sent to it.
    #[serde(default)]
    pub security_groups: Vec<NodeGroupsView>,
}

/// One compute node's security groups of a tenant. Generations count the controller's
/// SecurityGroupsUpdates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGroupsView {
    pub compute_node: Uuid,
    /// `in_force`, `pending` (no answer for the last update yet) or `refused` (the node could
    /// not load its table; it retries at each change).
    pub state: String,
    pub generation: u64,
    pub answered_generation: Option<u64>,
    pub reason: Option<String>,
    pub answered_at: Option<u64>,
}

impl From<&NodeGroupsOutcome> for NodeGroupsView {
    fn from(o: &NodeGroupsOutcome) -> Self {
        NodeGroupsView {
            compute_node: o.node,
            state: o.state().as_str().to_owned(),
            generation: o.sent,
            answered_generation: o.answered,
            reason: o.refused.clone(),
            answered_at: o.at,
        }
    }
}

/// Where a tenant's ingress stands at its CNCI. Generations are 16 hex digits (a digest of
/// the snapshot; JSON numbers would lose bits in some clients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressView {
    /// `in_force`, `pending` (no answer for this snapshot yet) or `refused`.
    pub state: String,
    /// The snapshot the store makes now.
    pub generation: String,
    /// The CNCI's last answer: its generation, why it refused (if it did), when (Unix s).
    pub answered_generation: Option<String>,
    pub reason: Option<String>,
    pub answered_at: Option<u64>,
}

impl IngressView {
    pub fn new(cnci: Uuid, wanted: u64, outcome: Option<&IngressOutcome>) -> Self {
        let hex = |g: u64| format!("{g:016x}");
        let mine = outcome.filter(|o| o.cnci == cnci);
        IngressView {
            state: AppliedState::of(outcome, cnci, wanted).as_str().to_owned(),
            generation: hex(wanted),
            answered_generation: mine.map(|o| hex(o.generation)),
            reason: mine.and_then(|o| o.refused.clone()),
            answered_at: mine.map(|o| o.at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetView {
    pub cidr: Ipv4Net,
    pub tunnel_kind: TunnelKind,
    pub tunnel_id: u32,
    /// The compute nodes hosting a workload of the subnet.
    pub compute_nodes: Vec<Uuid>,
    /// An automatic subnet (a workload that named none): each compute node's share of it.
    /// Empty for a subnet the workloads named. Absent in a pre-slices controller's answer.
    #[serde(default)]
    pub node_slices: Vec<NodeSliceView>,
}

/// One compute node's slice of an automatic subnet, and the addresses it gives out from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSliceView {
    pub compute_node: Uuid,
    pub slice: Ipv4Net,
    /// The first address the node gives out (never the subnet's gateway).
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
}

/// A public IP assignment (`POST`/`DELETE .../public-ips`, and in the lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIpView {
    pub tenant: Uuid,
    pub private_ip: Ipv4Addr,
    pub public_ip: Ipv4Addr,
}

/// `GET /v1/public-ips`: the pools and what is handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIpsView {
    pub pools: Vec<PoolView>,
    pub assignments: Vec<PublicIpView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolView {
    /// As the operator wrote it: a CIDR block or a `first-last` range.
    pub pool: String,
    pub size: u64,
    pub assigned: u64,
}

/// The body of `POST /v1/tenants/{id}/public-ips`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub private_ip: Ipv4Addr,
}

/// The answer to `DELETE /v1/tenants/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeleted {
    pub tenant: Uuid,
    /// `deleting` (its CNCI retires once no workload remains) or `forgotten` (it had no live
    /// CNCI, so nothing was left to wait for).
    pub state: String,
}

pub fn connected(yes: bool) -> String {
    if yes { "connected" } else { "disconnected" }.to_owned()
}

impl NetworkNodeView {
    pub fn new(node: &NetworkNode, cncis: &[Cnci]) -> Self {
        let live = cncis
            .iter()
            .filter(|c| c.network_node == node.uuid && c.state != crate::CnciState::Gone)
            .count();
        NetworkNodeView {
            uuid: node.uuid,
            state: connected(node.connected),
            underlay: node.underlay,
            external_device: node.external_device.clone(),
            capacity: node.capacity,
            cncis: u32::try_from(live).unwrap_or(u32::MAX),
        }
    }
}

impl From<&ComputeNode> for ComputeNodeView {
    fn from(node: &ComputeNode) -> Self {
        ComputeNodeView {
            uuid: node.uuid,
            state: connected(node.connected),
            underlay: node.underlay,
        }
    }
}

impl From<&Cnci> for CnciView {
    fn from(cnci: &Cnci) -> Self {
        CnciView {
            uuid: cnci.uuid,
            tenant: cnci.tenant,
            state: cnci.state.to_string(),
            network_node: cnci.network_node,
            underlay: cnci.underlay,
        }
    }
}

impl From<&PublicIpAssignment> for PublicIpView {
    fn from(a: &PublicIpAssignment) -> Self {
        PublicIpView {
            tenant: a.tenant,
            private_ip: a.private,
            public_ip: a.public,
        }
    }
}

impl SubnetView {
    /// The subnet, its hosts, and those of `slices` (the tenant's) that are its own.
    pub fn new(subnet: &TenantSubnet, compute_nodes: Vec<Uuid>, slices: &[AutoSlice]) -> Self {
        SubnetView {
            cidr: subnet.cidr,
            tunnel_kind: subnet.tunnel_kind,
            tunnel_id: subnet.tunnel_id,
            compute_nodes,
            node_slices: slices
                .iter()
                .filter(|s| s.subnet.cidr == subnet.cidr)
                .map(NodeSliceView::from)
                .collect(),
        }
    }
}

impl From<&AutoSlice> for NodeSliceView {
    fn from(s: &AutoSlice) -> Self {
        NodeSliceView {
            compute_node: s.compute_node,
            slice: s.slice,
            range_start: s.range.0,
            range_end: s.range.1,
        }
    }
}

impl PoolView {
    pub fn new(pool: PublicPool, assignments: &[PublicIpAssignment]) -> Self {
        let (first, last) = pool.bounds();
        PoolView {
            pool: pool.to_string(),
            size: u64::from(u32::from(last) - u32::from(first)) + 1,
            assigned: assignments
                .iter()
                .filter(|a| pool.contains(a.public))
                .count() as u64,
        }
    }
}

/// The CNCI to show for a tenant: its live one, else its last one (gone).
pub fn tenant_cnci(tenant: Uuid, cncis: &[Cnci]) -> Option<&Cnci> {
    let mine: Vec<&Cnci> = cncis.iter().filter(|c| c.tenant == tenant).collect();
    mine.iter()
        .find(|c| c.state != crate::CnciState::Gone)
        .or(mine.last())
        .copied()
}
