//! Compute nodes' registrations (TenantAdded, TenantRemoved, TenantSync): validated against
//! the network node's fences and the limits, keyed by the sending agent, recorded before the
//! kernel is touched and rolled back together with it when the kernel refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use ssntp::payloads::{
    Payload, RemoteSubnet, TenantAdded, TenantAddedEvent, TenantRemoved, TenantSync,
};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::handlers::Agent;
use crate::hub::HubKernel;
use crate::state::SubnetRecord;
use crate::validate;

/// How much one CNCI takes on (`--max-subnets`, `--max-nodes-per-subnet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_subnets: usize,
    pub max_nodes_per_subnet: usize,
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

fn subnet_of(remote: &RemoteSubnet) -> Result<Ipv4Net> {
    Ipv4Net::new(remote.subnet.network(), remote.subnet.prefix_len()).map_err(invalid)
}

/// The sending agent of an event: a canonical UUID, as the scheduler checks it against the
/// session that sent it.
fn agent_of(text: &str, payload: &str) -> Result<Uuid> {
    Uuid::parse_str(text)
        .ok()
        .filter(|u| u.to_string() == text)
        .ok_or_else(|| Error::Invalid(format!("{payload}: agent_uuid {text:?} is not a UUID")))
}

impl<K: HubKernel> Agent<K> {
    pub(crate) fn tenant_added(&mut self, ev: &TenantAddedEvent) -> Result<()> {
        self.check_tenant_event(ev, TenantAdded::NAME)?;
        let agent = agent_of(&ev.agent_uuid, TenantAdded::NAME)?;
        tracing::Span::current().record("agent", tracing::field::display(agent));
        let remote = ev.remote_subnet_in(TenantAdded::NAME).map_err(invalid)?;
        self.register(agent, &remote)
    }

    pub(crate) fn tenant_removed(&mut self, ev: &TenantAddedEvent) -> Result<()> {
        self.check_tenant_event(ev, TenantRemoved::NAME)?;
        let agent = agent_of(&ev.agent_uuid, TenantRemoved::NAME)?;
        tracing::Span::current().record("agent", tracing::field::display(agent));
        let remote = ev.remote_subnet_in(TenantRemoved::NAME).map_err(invalid)?;
        self.unregister(agent, subnet_of(&remote)?, remote.agent_ip)
    }

    /// Makes the sending agent's registrations exactly the snapshot's valid entries: adds the
    /// missing, removes its entries of subnets not listed. Invalid entries are logged and
    /// skipped; a repeat changes nothing.
    pub(crate) fn tenant_sync(&mut self, sync: &TenantSync) -> Result<()> {
        let body = &sync.0;
        let cnci = sync.concentrator().map_err(invalid)?;
        if cnci != self.record.uuid {
            return Err(Error::Invalid(format!(
                "tenant_sync is for CNCI {cnci}, this is {}",
                self.record.uuid
            )));
        }
        if body.tenant_uuid != self.record.tenant.to_string() {
            return Err(Error::Invalid(format!(
                "tenant_sync is for tenant {:?}, this CNCI serves tenant {}",
                body.tenant_uuid, self.record.tenant
            )));
        }
        let agent = agent_of(&body.agent_uuid, TenantSync::NAME)?;
        tracing::Span::current().record("agent", tracing::field::display(agent));
        let mut wanted: BTreeMap<Ipv4Net, RemoteSubnet> = BTreeMap::new();
        for entry in &body.subnets {
            let checked = if entry.agent_uuid != body.agent_uuid
                || entry.concentrator_uuid != body.concentrator_uuid
                || entry.tenant_uuid != body.tenant_uuid
            {
                Err(Error::Invalid(
                    "the entry names another agent, CNCI or tenant than the snapshot".into(),
                ))
            } else {
                entry
                    .remote_subnet_in(TenantSync::NAME)
                    .map_err(invalid)
                    .and_then(|r| Ok((subnet_of(&r)?, r)))
            };
            match checked {
                Ok((net, r)) => {
                    wanted.insert(net, r);
                }
                Err(e) => tracing::warn!(
                    "tenant_sync from agent {agent}: entry {:?} refused: {e}",
                    entry.tenant_subnet
                ),
            }
        }
        let ips: BTreeSet<Ipv4Addr> = wanted.values().map(|r| r.agent_ip).collect();
        let stale: Vec<(Ipv4Net, Ipv4Addr)> = self
            .desired
            .subnets
            .values()
            .filter(|r| !wanted.contains_key(&r.subnet))
            .filter_map(|r| {
                let legacy = || r.legacy.iter().find(|ip| ips.contains(ip)).copied();
                r.agents
                    .get(&agent)
                    .copied()
                    .or_else(legacy)
                    .map(|ip| (r.subnet, ip))
            })
            .collect();
        let (removed, listed) = (stale.len(), wanted.len());
        for (subnet, ip) in stale {
            if let Err(e) = self.unregister(agent, subnet, ip) {
                tracing::warn!("tenant_sync from agent {agent}: {e}");
            }
        }
        let mut refused = 0;
        for remote in wanted.values() {
            if let Err(e) = self.register(agent, remote) {
                refused += 1;
                tracing::warn!("tenant_sync from agent {agent}: {e}");
            }
        }
        tracing::info!(
            "tenant_sync from agent {agent}: {listed} listed, {refused} refused, {removed} stale removed"
        );
        Ok(())
    }

    /// Adds (or confirms) `agent`'s tunnel end for a subnet.
    fn register(&mut self, agent: Uuid, remote: &RemoteSubnet) -> Result<()> {
        let subnet = subnet_of(remote)?;
        let _span = tracing::info_span!("subnet", %subnet).entered();
        let kind = remote.tunnel_kind;
        let node = remote.agent_ip;
        let refuse =
            |why: String| Error::Invalid(format!("subnet {subnet} from agent {agent}: {why}"));
        validate::flood_target(node, &self.fences).map_err(refuse)?;
        let old = self.desired.subnets.get(&subnet).cloned();
        let mut rec = match &old {
            Some(r) => r.clone(),
            None => {
                let others = self.desired.subnets.keys().copied();
                validate::tenant_subnet(subnet, &self.fences, others).map_err(refuse)?;
                if self.desired.subnets.len() >= self.limits.max_subnets {
                    return Err(Error::Limit(format!(
                        "subnet {subnet} from agent {agent}: this CNCI carries {} subnets already (--max-subnets)",
                        self.desired.subnets.len()
                    )));
                }
                SubnetRecord::new(subnet, kind, remote.tunnel_id)
            }
        };
        if rec.kind != kind || rec.id != remote.tunnel_id {
            return Err(Error::Conflict(format!(
                "subnet {subnet} is carried by {} {}; node {node} asked for {kind} {}",
                rec.kind, rec.id, remote.tunnel_id
            )));
        }
        match rec.owner_of(node) {
            Some(Some(owner)) if owner == agent => return Ok(()), // a repeat
            Some(Some(owner)) => {
                return Err(Error::Conflict(format!(
                    "subnet {subnet}: {node} is registered by agent {owner}; agent {agent} may not claim it"
                )))
            }
            Some(None) => {
                rec.legacy.remove(&node); // taken over by its agent
            }
            None => {}
        }
        let count = rec.agents.len() + rec.legacy.len();
        if !rec.agents.contains_key(&agent) && count >= self.limits.max_nodes_per_subnet {
            return Err(Error::Limit(format!(
                "subnet {subnet}: {count} nodes registered already (--max-nodes-per-subnet); agent {agent} at {node} refused"
            )));
        }
        let moved = rec.agents.insert(agent, node);
        self.commit(old, Some(rec))?;
        match moved {
            Some(from) => {
                tracing::info!("tenant subnet {subnet}: agent {agent} moved {from} -> {node}")
            }
            None => tracing::info!(
                "tenant subnet {subnet}: added node {node} ({kind} {})",
                remote.tunnel_id
            ),
        }
        Ok(())
    }

    /// Removes `agent`'s tunnel end `node` from a subnet (or a legacy entry at `node`); the last
    /// one takes the subnet with it. Another agent's entry is left alone.
    fn unregister(&mut self, agent: Uuid, subnet: Ipv4Net, node: Ipv4Addr) -> Result<()> {
        let _span = tracing::info_span!("subnet", %subnet).entered();
        let Some(old) = self.desired.subnets.get(&subnet).cloned() else {
            return Ok(());
        };
        let mut rec = old.clone();
        match rec.owner_of(node) {
            Some(Some(owner)) if owner == agent => {
                rec.agents.remove(&agent);
            }
            Some(None) => {
                rec.legacy.remove(&node);
            }
            Some(Some(owner)) => {
                return Err(Error::Conflict(format!(
                    "subnet {subnet}: {node} was registered by agent {owner}, not {agent}: kept"
                )))
            }
            None => return Ok(()), // gone already
        }
        let last = rec.is_empty();
        self.commit(Some(old), (!last).then_some(rec))?;
        if last {
            tracing::info!("tenant subnet {subnet}: last node {node} left, subnet removed");
        } else {
            tracing::info!("tenant subnet {subnet}: removed node {node}");
        }
        Ok(())
    }

    /// Records `new` for a subnet (`None`: no record) and brings the kernel there from `old`.
    /// When the kernel refuses, the record and the kernel both go back to `old`.
    fn commit(&mut self, old: Option<SubnetRecord>, new: Option<SubnetRecord>) -> Result<()> {
        let Some(subnet) = old.as_ref().or(new.as_ref()).map(|r| r.subnet) else {
            return Ok(());
        };
        self.put_record(subnet, new.as_ref())?;
        if let Err(e) = self.program(old.as_ref(), new.as_ref()) {
            let undo = self
                .put_record(subnet, old.as_ref())
                .and_then(|()| self.program(new.as_ref(), old.as_ref()));
            if let Err(u) = undo {
                tracing::error!("subnet {subnet}: rolling back after \"{e}\" failed: {u}");
            }
            return Err(e);
        }
        Ok(())
    }

    fn put_record(&mut self, subnet: Ipv4Net, rec: Option<&SubnetRecord>) -> Result<()> {
        match rec {
            Some(r) => {
                self.store.put_subnet(r)?;
                self.desired.subnets.insert(subnet, r.clone());
            }
            None => {
                self.store.remove_subnet(subnet)?;
                self.desired.subnets.remove(&subnet);
            }
        }
        Ok(())
    }

    /// The kernel changes from one record of a subnet to the next: one flood entry or tunnel
    /// per node that came or went, the whole subnet when it appears or goes.
    fn program(&mut self, from: Option<&SubnetRecord>, to: Option<&SubnetRecord>) -> Result<()> {
        match (from, to) {
            (None, None) => Ok(()),
            (Some(f), None) => {
                self.stop_dhcp(f.subnet);
                self.hub.remove_subnet(f)
            }
            (None, Some(t)) => {
                self.hub.ensure_subnet(t)?;
                self.start_dhcp(t);
                Ok(())
            }
            (Some(f), Some(t)) => {
                let (have, want) = (f.nodes(), t.nodes());
                for gone in have.difference(&want) {
                    self.hub.remove_node(t, *gone)?;
                }
                for new in want.difference(&have) {
                    self.hub.add_node(t, *new)?;
                }
                Ok(())
            }
        }
    }
}
