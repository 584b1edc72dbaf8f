//! The `ciao-controller` daemon: what it decides on each frame from the scheduler, and the
//! loop that feeds it ([`run`]).
//!
//! Every decision goes to the store before the frame that acts on it is sent, and every frame
//! it sends is idempotent for its receiver, so a crash at any point is repaired by sending
//! again: START on a network node's (re)connect or report, assignments on the next request.

pub mod frames;
pub mod identity;
mod ingress;
mod run;
mod secgroups;
mod subnet;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use ssntp::frame::{error, event, kind, Frame};
use ssntp::payloads::{
    CnciRequest, ConcentratorInstanceAdded, InstanceDeleted, NodeConnected, NodeDisconnected,
    NodeReport, NodeType, Payload, PayloadError, StartFailure, TunnelKind,
};
use uuid::Uuid;

use crate::auto_subnet::TenantSubnets;
use crate::model::{Cnci, CnciState, PublicIpAssignment, TenantState};
use crate::store::{NetworkNodeReport, Store, StoreError};

pub use run::{run, Connection};

pub use crate::api::AdminEvent;

/// Why a frame was not acted on (logged; nothing was half-done).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
}

type Out = Result<Vec<Frame>, HandleError>;

/// A network node's `capacity` 0 means "no limit given".
fn capacity(reported: u32) -> u32 {
    if reported == 0 {
        u32::MAX
    } else {
        reported
    }
}

/// The daemon's state: the store, and in memory only the compute nodes waiting for a CNCI
/// (they re-send their request every 2 s, so losing this on a restart loses nothing).
pub struct Controller {
    me: Uuid,
    store: Arc<dyn Store>,
    default_kind: TunnelKind,
    /// Tenant -> (compute node, subnet) waiting for the tenant's CNCI to be ready.
    waiting: HashMap<Uuid, HashSet<(Uuid, Ipv4Net)>>,
    /// Compute nodes recorded this run with their address: spares a store write per request.
    recorded: HashMap<Uuid, Ipv4Addr>,
    /// Where automatic tenant subnets come from.
    tenant_subnets: TenantSubnets,
    /// The security-group snapshot last sent to each (compute node, tenant) this run: a
    /// change re-sends only the snapshots it changes.
    sg_sent: secgroups::Sent,
}

impl Controller {
    pub fn new(me: Uuid, store: Arc<dyn Store>, default_kind: TunnelKind) -> Self {
        Controller {
            me,
            store,
            default_kind,
            waiting: HashMap::new(),
            recorded: HashMap::new(),
            tenant_subnets: TenantSubnets::default(),
            sg_sent: secgroups::Sent::default(),
        }
    }

    /// Automatic subnets from `plan` instead of the default range.
    pub fn with_tenant_subnets(mut self, plan: TenantSubnets) -> Self {
        self.tenant_subnets = plan;
        self
    }

    /// At start every node counts as disconnected until the scheduler's NodeConnected says
    /// otherwise: a node that left while the controller was down must get no placement.
    pub fn forget_sessions(&self) -> Result<(), StoreError> {
        let networks = self.store.network_nodes()?.into_iter().map(|n| n.uuid);
        let computes = self.store.compute_nodes()?.into_iter().map(|n| n.uuid);
        for node in networks.chain(computes) {
            self.store.node_disconnected(node)?;
        }
        Ok(())
    }

    /// The frames to send in answer to `frame` (none if it is not for the controller or is
    /// refused; a refusal is logged).
    pub fn handle(&mut self, frame: &Frame) -> Vec<Frame> {
        let p = &frame.payload;
        let result = match (frame.kind, frame.operand) {
            (kind::EVENT, event::NODE_CONNECTED) => self.node_connected(p),
            (kind::EVENT, event::NODE_DISCONNECTED) => self.node_disconnected(p),
            (kind::EVENT, event::NODE_REPORT) => self.node_report(p),
            (kind::EVENT, event::CNCI_REQUEST) => self.cnci_request(p),
            (kind::EVENT, event::SUBNET_REQUEST) => self.subnet_request(p),
            (kind::EVENT, event::PORT_GROUPS) => self.port_groups(p),
            (kind::EVENT, event::SECURITY_GROUPS_APPLIED) => self.groups_applied(p),
            (kind::EVENT, event::CONCENTRATOR_INSTANCE_ADDED) => self.cnci_ready(p),
            (kind::EVENT, event::INSTANCE_DELETED) => self.cnci_deleted(p),
            (kind::ERROR, error::START_FAILURE) => self.start_failed(p),
            (kind::EVENT, event::TENANT_INGRESS_APPLIED) => self.ingress_applied(p),
            (kind::ERROR, error::TENANT_INGRESS_FAILURE) => self.ingress_refused(p),
            _ => Ok(Vec::new()),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(
                kind = frame.kind,
                operand = frame.operand,
                "frame refused: {e}"
            );
            Vec::new()
        })
    }

    /// The frames that make the nodes follow a change the admin API made.
    pub fn admin(&mut self, event: &AdminEvent) -> Vec<Frame> {
        let result = match event {
            AdminEvent::TenantDeleted(_) => self.stop_retired(),
            AdminEvent::PublicIpAssigned(ip) => self.public_ip(ip, frames::assign_public_ip),
            AdminEvent::PublicIpReleased(ip) => self.public_ip(ip, frames::release_public_ip),
            AdminEvent::IngressChanged(tenant) => self.ingress(*tenant),
            AdminEvent::SecurityChanged(tenant) => self.sg_snapshots(*tenant, None),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(?event, "admin event not applied: {e}");
            Vec::new()
        })
    }

    fn node_connected(&mut self, payload: &[u8]) -> Out {
        let body = NodeConnected::from_yaml(payload)?.0;
        let node = parse_uuid("node_connected.node_uuid", &body.node_uuid)?;
        match body.node_type {
            NodeType::NetworkNode => {
                let Some(known) = self
                    .store
                    .network_nodes()?
                    .into_iter()
                    .find(|n| n.uuid == node)
                else {
                    return Ok(Vec::new()); // its NodeReport will introduce it
                };
                self.store.network_node_connected(&NetworkNodeReport {
                    uuid: node,
                    underlay: known.underlay,
                    external_device: known.external_device,
                    capacity: known.capacity,
                })?;
                tracing::info!(%node, "network node back");
                self.restart_pending(node, None)
            }
            NodeType::ComputeNode => {
                let known = self
                    .store
                    .compute_nodes()?
                    .into_iter()
                    .find(|n| n.uuid == node);
                if let Some(known) = known {
                    self.store.compute_node_connected(node, known.underlay)?;
                }
                Ok(Vec::new())
            }
            NodeType::Other(_) => Ok(Vec::new()),
        }
    }

    fn node_disconnected(&mut self, payload: &[u8]) -> Out {
        let body = NodeDisconnected::from_yaml(payload)?.0;
        let node = parse_uuid("node_disconnected.node_uuid", &body.node_uuid)?;
        self.store.node_disconnected(node)?;
        self.recorded.remove(&node);
        tracing::info!(%node, node_type = ?body.node_type, "node disconnected");
        Ok(Vec::new())
    }

    fn node_report(&mut self, payload: &[u8]) -> Out {
        let report = NodeReport::from_yaml(payload)?;
        let node = report.node()?;
        let underlay = report.underlay_ip()?;
        match &report.0.node_type {
            NodeType::NetworkNode => {}
            NodeType::ComputeNode => {
                self.store.compute_node_connected(node, underlay)?;
                self.recorded.insert(node, underlay);
                return Ok(Vec::new());
            }
            other => {
                return Err(HandleError::Refused(format!(
                    "node_report.node_type {other:?} of {node} is neither network_node nor compute_node"
                )))
            }
        }
        let running = report
            .0
            .cncis
            .iter()
            .map(|c| parse_uuid("node_report.cncis", c))
            .collect::<Result<HashSet<Uuid>, _>>()?;
        self.store.network_node_connected(&NetworkNodeReport {
            uuid: node,
            underlay,
            external_device: report.0.external_device.clone(),
            capacity: capacity(report.0.capacity),
        })?;
        tracing::info!(%node, %underlay, running = running.len(), "network node reported");
        let mut out = self.restart_pending(node, Some(&running))?;
        out.extend(self.stop_unwanted(node, &running)?);
        Ok(out)
    }

    /// START again every CNCI of `node` not known to run: requested or starting ones, and,
    /// when the node listed what it runs, ready or retiring ones missing from the list.
    fn restart_pending(&mut self, node: Uuid, running: Option<&HashSet<Uuid>>) -> Out {
        let mut out = Vec::new();
        for cnci in self.store.cncis_on(node)? {
            if cnci.state == CnciState::Gone {
                continue;
            }
            let lost = running.is_some_and(|r| !r.contains(&cnci.uuid));
            let send = match cnci.state {
                CnciState::Requested | CnciState::Starting => true,
                CnciState::Ready | CnciState::Retiring => lost,
                CnciState::Gone => false,
            };
            if send {
                out.push(self.start(&cnci)?);
            }
        }
        Ok(out)
    }

    /// Persists that `cnci` is being started, then returns its START.
    fn start(&self, cnci: &Cnci) -> Result<Frame, HandleError> {
        if matches!(cnci.state, CnciState::Requested | CnciState::Ready) {
            self.store
                .set_cnci_state(cnci.uuid, CnciState::Starting, None)?;
        }
        tracing::info!(cnci = %cnci.uuid, tenant = %cnci.tenant, node = %cnci.network_node, "START");
        Ok(frames::start(self.me, cnci))
    }

    /// DELETE for what `node` runs that the store does not want there, and for its retired
    /// CNCIs whose tenant has no workload left.
    fn stop_unwanted(&self, node: Uuid, running: &HashSet<Uuid>) -> Out {
        let wanted: HashSet<Uuid> = self
            .store
            .cncis_on(node)?
            .into_iter()
            .filter(|c| c.state != CnciState::Gone)
            .map(|c| c.uuid)
            .collect();
        let mut out: Vec<Frame> = running
            .difference(&wanted)
            .map(|c| {
                tracing::info!(cnci = %c, %node, "DELETE of a CNCI the store does not hold");
                frames::delete(self.me, *c, node)
            })
            .collect();
        out.extend(
            self.store
                .cncis_to_stop()?
                .into_iter()
                .filter(|c| c.network_node == node)
                .map(|c| frames::delete(self.me, c.uuid, node)),
        );
        Ok(out)
    }

    fn stop_retired(&self) -> Out {
        Ok(self
            .store
            .cncis_to_stop()?
            .into_iter()
            .map(|c| {
                tracing::info!(cnci = %c.uuid, tenant = %c.tenant, "DELETE of a retired CNCI");
                frames::delete(self.me, c.uuid, c.network_node)
            })
            .collect())
    }

    fn cnci_request(&mut self, payload: &[u8]) -> Out {
        let request = CnciRequest::from_yaml(payload)?;
        let agent = request.agent()?;
        let tenant = request.tenant()?;
        let agent_ip = request.agent_ip()?;
        let text = &request.0.subnet;
        let refuse = |why: String| {
            tracing::warn!(%agent, %tenant, subnet = %text, "CnciRequest refused: {why}");
            Ok(vec![frames::refused(self.me, agent, tenant, text, &why)])
        };
        // The exact text: host bits set or a bad shape is refused, not silently truncated.
        let Ok(cidr) = text.parse::<Ipv4Net>() else {
            return refuse(format!("cnci_request.subnet {text:?} is not an IPv4 CIDR"));
        };
        let assigned = match self
            .store
            .request_subnet(tenant, cidr, self.default_kind, agent)
        {
            Ok(assigned) => assigned,
            Err(e) if refused_for_good(&e) => return refuse(e.to_string()),
            Err(e) => return Err(e.into()),
        };
        if self.recorded.get(&agent) != Some(&agent_ip) {
            self.store.compute_node_connected(agent, agent_ip)?;
            self.recorded.insert(agent, agent_ip);
        }
        let cnci = assigned.cnci;
        match cnci.state {
            CnciState::Ready => {
                let mut out = vec![frames::assignment(self.me, agent, &cnci, &assigned.subnet)];
                // The subnet may be new: with SSH on, it brought a new block of ports.
                out.extend(self.ingress(tenant)?);
                Ok(out)
            }
            state => {
                self.waiting
                    .entry(tenant)
                    .or_default()
                    .insert((agent, cidr));
                if state == CnciState::Requested {
                    return Ok(vec![self.start(&cnci)?]);
                }
                Ok(Vec::new())
            }
        }
    }

    fn cnci_ready(&mut self, payload: &[u8]) -> Out {
        let body = ConcentratorInstanceAdded::from_yaml(payload)?.0;
        let uuid = parse_uuid(
            "concentrator_instance_added.instance_uuid",
            &body.instance_uuid,
        )?;
        let ip: Ipv4Addr = body.concentrator_ip.parse().map_err(|_| {
            HandleError::Refused(format!(
                "concentrator_instance_added.concentrator_ip {:?} of {uuid} is not an IPv4 address",
                body.concentrator_ip
            ))
        })?;
        let Some(before) = self.store.cnci(uuid)? else {
            tracing::debug!(cnci = %uuid, "a CNCI the controller did not place (static mode)");
            return Ok(Vec::new());
        };
        if matches!(before.state, CnciState::Gone | CnciState::Retiring) {
            return Ok(Vec::new());
        }
        let cnci = self
            .store
            .set_cnci_state(uuid, CnciState::Ready, Some(ip))?;
        let changed = before.state != CnciState::Ready || before.underlay != ip;
        tracing::info!(cnci = %uuid, tenant = %cnci.tenant, %ip, changed, "CNCI ready");
        let mut out = self.assignments(&cnci, changed)?;
        // On every announce: a restarted CNCI gets the current snapshot whatever it kept.
        out.extend(self.ingress(cnci.tenant)?);
        Ok(out)
    }

    /// CnciAssignment for every waiter of the CNCI's tenant and, if the CNCI is new or moved,
    /// for every compute node hosting one of its subnets (plus its public IPs again).
    fn assignments(&mut self, cnci: &Cnci, broadcast: bool) -> Out {
        let mut to: HashSet<(Uuid, Ipv4Net)> =
            self.waiting.remove(&cnci.tenant).unwrap_or_default();
        let subnets = self.store.subnets(cnci.tenant)?;
        if broadcast {
            for subnet in &subnets {
                for node in self.store.subnet_nodes(cnci.tenant, subnet.cidr)? {
                    to.insert((node, subnet.cidr));
                }
            }
        }
        let mut out: Vec<Frame> = to
            .into_iter()
            .filter_map(|(agent, cidr)| {
                let subnet = subnets.iter().find(|s| s.cidr == cidr)?;
                Some(frames::assignment(self.me, agent, cnci, subnet))
            })
            .collect();
        if broadcast {
            out.extend(
                self.store
                    .public_ips()?
                    .iter()
                    .filter(|ip| ip.tenant == cnci.tenant)
                    .map(|ip| frames::assign_public_ip(self.me, cnci, ip)),
            );
        }
        Ok(out)
    }

    /// A CNCI is gone from its node. If its tenant still has workloads, a replacement is
    /// placed and started at once (the compute nodes, already assigned, would not ask again).
    fn cnci_deleted(&mut self, payload: &[u8]) -> Out {
        let uuid = InstanceDeleted::from_yaml(payload)?.instance()?;
        let Some(cnci) = self.store.cnci(uuid)? else {
            return Ok(Vec::new());
        };
        if cnci.state == CnciState::Gone {
            return Ok(Vec::new());
        }
        self.store.set_cnci_state(uuid, CnciState::Gone, None)?;
        tracing::info!(cnci = %uuid, tenant = %cnci.tenant, "CNCI gone");
        let active = self
            .store
            .tenant(cnci.tenant)?
            .is_some_and(|t| t.state == TenantState::Active);
        if !active || !self.hosted(cnci.tenant)? {
            return Ok(Vec::new());
        }
        let replacement = self.store.ensure_cnci(cnci.tenant)?;
        if replacement.state == CnciState::Requested {
            return Ok(vec![self.start(&replacement)?]);
        }
        Ok(Vec::new())
    }

    /// A START failed: the CNCI is gone. The compute nodes waiting for it ask again every
    /// 2 s, and that request places a new one (on the network node with the fewest CNCIs,
    /// possibly the same): a node that keeps failing is retried at that pace, not in a loop.
    fn start_failed(&mut self, payload: &[u8]) -> Out {
        let body = StartFailure::from_yaml(payload)?.0;
        let uuid = parse_uuid("StartFailure.instance_uuid", &body.instance_uuid)?;
        let Some(cnci) = self.store.cnci(uuid)? else {
            return Ok(Vec::new());
        };
        if cnci.state != CnciState::Gone {
            self.store.set_cnci_state(uuid, CnciState::Gone, None)?;
        }
        tracing::warn!(cnci = %uuid, node = %body.node_uuid, reason = %body.reason, "CNCI start failed");
        Ok(Vec::new())
    }

    fn public_ip(
        &self,
        ip: &PublicIpAssignment,
        make: fn(Uuid, &Cnci, &PublicIpAssignment) -> Frame,
    ) -> Out {
        let live = self
            .store
            .cnci_of(ip.tenant)?
            .filter(|c| matches!(c.state, CnciState::Ready | CnciState::Retiring));
        // A CNCI not yet ready gets the tenant's public IPs when it announces itself.
        Ok(live.map(|c| make(self.me, &c, ip)).into_iter().collect())
    }

    /// Whether any compute node hosts a subnet of `tenant`.
    fn hosted(&self, tenant: Uuid) -> Result<bool, StoreError> {
        for subnet in self.store.subnets(tenant)? {
            if !self.store.subnet_nodes(tenant, subnet.cidr)?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Whether a request the store refused would be refused again, whatever happens meanwhile
/// (the node is told, and stops asking). Anything else (no network node yet, a failing
/// backend) may pass later: the node keeps asking.
fn refused_for_good(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::SubnetNotNetwork(_)
            | StoreError::SubnetOverlap { .. }
            | StoreError::TunnelIdsExhausted(_)
            | StoreError::TenantDeleting(_)
    )
}

fn parse_uuid(key: &str, text: &str) -> Result<Uuid, HandleError> {
    Uuid::parse_str(text).map_err(|_| HandleError::Refused(format!("{key} {text:?} is not a UUID")))
}

#[cfg(test)]
mod tests;
