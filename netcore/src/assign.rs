//! Controller mode: a subnet whose workloads named no CNCI is set up at once without a tunnel,
//! waits for its CNCI (`ciao-node run` asks the controller), and gets its tunnel when the
//! controller's assignment arrives ([`Node::assign_cnci`]).
//!
//! An assignment is journaled like an attach: the assignment is written to the subnet's record
//! before the tunnel is made, and a call that dies or fails half-way is undone (the subnet
//! awaits its CNCI again, and asks again), so the record and the kernel never disagree.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use uuid::Uuid;

use crate::attach::{check_cnci_not_local, Node};
use crate::config::{validate_tunnel_id, Cnci};
use crate::error::{Error, Result};
use crate::ids;
use crate::kernel::Kernel;
use crate::report::{Report, ReportEvent};
use crate::state::{Journal, Locked, NetRecord};
use crate::subnet::{ensure_bridge, ensure_tunnel, underlay_toward};
use crate::teardown;
use crate::tunnel::{driver, TunnelKind};

/// What [`Node::assign_cnci`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignOutcome {
    /// The subnet awaited its CNCI: the tunnel was created and TenantAdded queued.
    Created,
    /// The subnet had another CNCI or tunnel: TenantRemoved queued for the old one, the tunnel
    /// re-created toward the new one, TenantAdded queued.
    Replaced,
    /// The subnet already has exactly this assignment: nothing changed.
    Unchanged,
    /// The node does not host the subnet (its last workload left meanwhile): nothing to do.
    NotHosted,
    /// The subnet's workloads name their CNCI (static mode): the assignment is ignored.
    Static,
}

/// A subnet that awaits its CNCI, for `ciao-node run` to ask the controller about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Awaiting {
    pub tenant: Uuid,
    pub subnet: Ipv4Net,
    /// Unix seconds since when it waits.
    pub since: u64,
    /// This node's underlay address, if one was found when the subnet was set up.
    pub agent_ip: Option<Ipv4Addr>,
}

/// Now, in unix seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The subnets among `nets` that await their CNCI.
pub fn awaiting(nets: &[NetRecord]) -> Vec<Awaiting> {
    nets.iter()
        .filter_map(|n| {
            Some(Awaiting {
                tenant: n.config.tenant,
                subnet: n.config.subnet,
                since: n.awaiting_cnci_since?,
                agent_ip: (!n.local_ip.is_unspecified()).then_some(n.local_ip),
            })
        })
        .collect()
}

impl<K: Kernel> Node<K> {
    /// The subnets of this node that await their CNCI.
    pub fn awaiting_cnci(&mut self) -> Result<Vec<Awaiting>> {
        let (locked, _) = self.lock_and_recover()?;
        Ok(awaiting(&locked.nets()?))
    }

    /// Gives a controller-mode subnet its CNCI and tunnel id: persists the assignment, creates
    /// the tunnel on the subnet's bridge and queues TenantAdded, as a static first attach does.
    /// Idempotent; a different assignment replaces the tunnel. The tunnel id must not collide
    /// with another subnet's on this node (a Conflict, and nothing changes).
    pub fn assign_cnci(
        &mut self,
        tenant: Uuid,
        subnet: Ipv4Net,
        cnci: Cnci,
        kind: TunnelKind,
        tunnel_id: u32,
    ) -> Result<AssignOutcome> {
        cnci.validate()?;
        validate_tunnel_id(kind, tunnel_id)?;
        let key = ids::net_key(tenant, subnet.trunc());
        let (locked, nl) = self.lock_and_recover()?;
        let Some(net) = locked.net(&key)? else {
            return Ok(AssignOutcome::NotHosted);
        };
        if !net.controlled {
            return Ok(AssignOutcome::Static);
        }
        let same = net.config.cnci == Some(cnci)
            && net.config.tunnel_kind == kind
            && net.tunnel_id == tunnel_id;
        if same && net.added_queued {
            return Ok(AssignOutcome::Unchanged);
        }
        check_cnci_not_local(nl, cnci)?;
        let slot = driver(kind).slot(tunnel_id, cnci.ip);
        match locked.tunnel_id_owner(&slot)? {
            Some(owner) if owner != key => {
                return Err(Error::Conflict(format!(
                    "{kind} id {tunnel_id} toward {} is already used on this node by {owner}; \
                     the controller assigned it to {subnet} of tenant {tenant}",
                    cnci.ip
                )))
            }
            _ => {}
        }
        let (underlay, local_ip) =
            underlay_toward(nl, net.config.underlay_device.as_deref(), cnci)?;
        let replacing = net.config.cnci.is_some();
        let since = net.awaiting_cnci_since;
        locked.write_journal(&Journal::Assign {
            net: key.clone(),
            since,
        })?;
        let result = (|| -> Result<()> {
            let mut next = if replacing {
                to_awaiting(nl, &locked, &net, None, false)?
            } else {
                net.clone()
            };
            next.config.cnci = Some(cnci);
            next.config.tunnel_kind = kind;
            next.config.tunnel_id = Some(tunnel_id);
            next.tunnel_id = tunnel_id;
            next.underlay = underlay.name.clone();
            next.local_ip = local_ip;
            next.generation = Uuid::new_v4();
            next.added_queued = false;
            next.awaiting_cnci_since = None;
            locked.write_net(&next)?;
            if let Err(owner) = locked.claim_tunnel_id(&slot, &key)? {
                return Err(Error::Conflict(format!(
                    "{kind} id {tunnel_id} toward {} is already used on this node by {owner}",
                    cnci.ip
                )));
            }
            let node = locked.node_tag()?;
            let bridge = ensure_bridge(nl, &node, &next)?;
            ensure_tunnel(nl, &node, &next, &bridge)?;
            let agent = locked.node_identity()?.uuid;
            locked.queue_report(&Report::for_net(ReportEvent::TenantAdded, agent, &next))?;
            next.added_queued = true;
            locked.write_net(&next)
        })();
        match result {
            Ok(()) => {
                locked.clear_journal()?;
                Ok(if replacing {
                    AssignOutcome::Replaced
                } else {
                    AssignOutcome::Created
                })
            }
            Err(err) => match undo_assign(nl, &locked, &key, since) {
                Ok(()) => Err(err),
                Err(undo_err) => Err(Error::Internal(format!(
                    "{err}; undoing the assignment also failed: {undo_err}"
                ))),
            },
        }
    }
}

/// Undoes an assignment that failed or whose call died: the subnet awaits its CNCI again.
pub(crate) fn undo_assign(
    nl: &mut impl Kernel,
    locked: &Locked<'_>,
    key: &str,
    since: Option<u64>,
) -> Result<()> {
    if let Some(net) = locked.net(key)? {
        if net.controlled {
            to_awaiting(nl, locked, &net, since, true)?;
        }
    }
    locked.clear_journal()
}

/// Takes a controller-mode subnet's tunnel away: TenantRemoved (or, on `rollback`, the
/// undelivered TenantAdded withdrawn), the tunnel link deleted, its id released, and the
/// record marked as awaiting its CNCI since `since` (default: now). Returns the new record.
fn to_awaiting(
    nl: &mut impl Kernel,
    locked: &Locked<'_>,
    net: &NetRecord,
    since: Option<u64>,
    rollback: bool,
) -> Result<NetRecord> {
    teardown::report_gone(locked, net, rollback)?;
    let node = locked.node_tag()?;
    teardown::delete_tunnel(nl, &node, net)?;
    if let Some(slot) = net.tunnel_slot() {
        locked.release_tunnel_id(&slot, &net.key)?;
    }
    let mut next = net.clone();
    next.config.cnci = None;
    next.config.tunnel_id = None;
    next.tunnel_id = 0;
    next.added_queued = false;
    next.awaiting_cnci_since = Some(since.or(net.awaiting_cnci_since).unwrap_or_else(now_unix));
    locked.write_net(&next)?;
    Ok(next)
}
